# Test workspace: built-in provider only. The slow step echoes the secret through the
# environment terraform passes to local-exec, the way a careless script would. State in
# opsqueue's bucket: the worker supplies bucket and key.

terraform {
  backend "s3" {}
}

variable "greeting" {
  type    = string
  default = "hello"
}

variable "sleep_seconds" {
  type    = number
  default = 0
}

variable "api_token" {
  type      = string
  default   = ""
  sensitive = true
}

resource "terraform_data" "first" {
  input = var.greeting
}

resource "terraform_data" "second" {
  input      = "${var.greeting}-second"
  depends_on = [terraform_data.first]
}

resource "terraform_data" "slow" {
  input      = var.greeting
  depends_on = [terraform_data.second]

  provisioner "local-exec" {
    command = "echo slow step started; sleep ${var.sleep_seconds}; echo \"token in use: $TF_VAR_api_token\"; echo aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY; echo slow step done"
  }
}

output "greeting" {
  value = terraform_data.first.output
}

output "token" {
  value     = var.api_token
  sensitive = true
}
