# Test workspace whose local-exec ignores SIGINT, in the foreground and in the background:
# terraform itself stops on a cancel, its children would not.

terraform {
  backend "s3" {}
}

resource "terraform_data" "stubborn" {
  input = "stubborn"

  provisioner "local-exec" {
    command = "trap '' INT; sleep 300 & echo stubborn step started; sleep 300"
  }
}
