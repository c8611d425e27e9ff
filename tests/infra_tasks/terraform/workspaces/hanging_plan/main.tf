# Test workspace whose plan can be held mid-way: given `hang_url`, it reads a remote state
# over HTTP (built-in, no provider download) from a server that never answers, while
# terraform holds the workspace's state lock. Without it, a plain one-resource plan.

terraform {
  backend "s3" {}
}

variable "hang_url" {
  type    = string
  default = ""
}

data "terraform_remote_state" "hanging" {
  count   = var.hang_url == "" ? 0 : 1
  backend = "http"
  config = {
    address = var.hang_url
  }
}

resource "terraform_data" "one" {
  input = "one"
}
