"""Create the terraform state bucket on the local AWS-compatible endpoint.

Used by the dev stack (`make run`) and docker-compose. In production CloudFormation creates
the bucket (versioned, encrypted, public access blocked, retained); this makes the local one
the same way, so terraform's s3 backend and the stored plans behave as they do there.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import ClientError
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create (or bring in line) the S3 bucket for terraform state and saved plans."

    def handle(self, *args: Any, **options: Any) -> None:
        bucket = settings.TERRAFORM_STATE_BUCKET
        if not bucket:
            raise CommandError("TERRAFORM_STATE_BUCKET is not set.")
        s3 = boto3.client("s3", region_name=settings.AWS_REGION)
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        self.stdout.write(
            f"terraform state bucket {bucket}: versioned, encrypted, public access blocked"
        )
