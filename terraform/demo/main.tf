# The dev stack's demo workspace: built-in provider only, so it needs no download.
# Plan, approve and apply it from the admin; the slow step leaves time to press Cancel.

# State in opsqueue's bucket (the local endpoint's S3 under `make run`): the worker passes
# bucket, key and locking with -backend-config.
terraform {
  backend "s3" {}
}

variable "environment" {
  type    = string
  default = "demo"
}

variable "release" {
  type    = string
  default = "1"
}

variable "slow_step_seconds" {
  type    = number
  default = 20
}

resource "terraform_data" "network" {
  input = "network-${var.environment}"
}

resource "terraform_data" "database" {
  input = "database-${var.environment}"
  depends_on = [terraform_data.network]
}

resource "terraform_data" "app" {
  input            = "app-${var.environment}-r${var.release}"
  triggers_replace = [var.release]
  depends_on       = [terraform_data.database]

  # Values reach the command through its environment, never spliced into the command
  # text: a release named "$(id -un > canary)" is printed, not run, on the worker.
  provisioner "local-exec" {
    command = "for i in $(seq \"$STEPS\"); do echo \"deploying release $RELEASE: step $i/$STEPS\"; sleep 1; done"
    environment = {
      RELEASE = var.release
      STEPS   = var.slow_step_seconds
    }
  }
}

output "app" {
  value = terraform_data.app.output
}

output "database" {
  value = terraform_data.database.output
}
