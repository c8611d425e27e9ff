# Test workspace that manages nothing: every plan of it has no changes.
terraform {
  backend "s3" {}
}

variable "greeting" {
  type    = string
  default = "hello"
}
