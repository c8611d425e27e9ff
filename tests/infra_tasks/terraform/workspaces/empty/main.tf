# Test workspace that manages nothing: every plan of it has no changes.
variable "greeting" {
  type    = string
  default = "hello"
}
