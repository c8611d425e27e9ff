# Leak test workspace: prints its secrets in every form a careless script might (each line
# of a PEM key, base64, URL-encoded, JSON-escaped), credentials inside longer tokens, and
# hands them out as outputs not declared sensitive. Values reach the command through the
# environment terraform passes to local-exec, never interpolated into it.

terraform {
  backend "s3" {}
}

variable "api_token" {
  type      = string
  sensitive = true
}

variable "pem_key" {
  type      = string
  sensitive = true
}

# Credentials no one told opsqueue about: only their shape gives them away.
locals {
  key_id     = "AKIAZ7PLANTED0KEY1DX"
  secret_key = "Pl4nted/SecretKey+NotInAnyList0123456789"
}

resource "terraform_data" "leak" {
  provisioner "local-exec" {
    command = <<-EOT
      printf '%s\n' "$TF_VAR_pem_key"
      printf 'b64 %s\n' "$(printf '%s' "$TF_VAR_api_token" | base64 -w0)"
      printf 'b64url %s\n' "$(printf '%s' "$TF_VAR_api_token" | base64 -w0 | tr '+/' '-_' | tr -d '=')"
      /usr/bin/python3 -c 'import os, urllib.parse; print("url", urllib.parse.quote(os.environ["TF_VAR_api_token"], safe=""))'
      /usr/bin/python3 -c 'import os, json; print("json", json.dumps({"t": os.environ["TF_VAR_api_token"]}))'
      echo "Authorization: AWS4-HMAC-SHA256 Credential=${local.key_id}/20261203/us-east-1/s3/aws4_request"
      echo "copying s3://bucket/backups/${local.secret_key}/dump.sql"
    EOT
  }
}

output "token_in_the_clear" {
  value = nonsensitive(var.api_token)
}

output "credentials" {
  value = { id = local.key_id, path = "keys/${local.secret_key}/x" }
}

output "token_sealed" {
  value     = var.api_token
  sensitive = true
}
