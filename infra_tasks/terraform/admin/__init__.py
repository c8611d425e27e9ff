"""Admin for terraform: workspaces (plan, destroy, drift check) and read-only runs (approve,
discard, cancel, force-unlock), each action behind its own permission.

`forms`: the workspace, secret and destroy-confirmation forms; `workspaces` and `runs`: the
two model admins; `common`: the permissions and how a refused request is reported.
"""

from infra_tasks.terraform.admin.runs import TerraformRunAdmin
from infra_tasks.terraform.admin.workspaces import TerraformWorkspaceAdmin

__all__ = ["TerraformRunAdmin", "TerraformWorkspaceAdmin"]
