"""The forms of the terraform admin: a workspace, its secret references, and the typed name
that confirms a destroy."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin

from infra_tasks.terraform.models import TerraformSecret, TerraformWorkspace
from infra_tasks.terraform.secrets import (
    TERRAFORM_VARIABLE_NAME,
    SecretReferenceRefused,
    secret_reference_check,
)
from infra_tasks.terraform.services.runs import (
    RunError,
    run_time_limit_max,
    workspace_directory_validate,
)


class WorkspaceForm(forms.ModelForm):
    class Meta:
        model = TerraformWorkspace
        fields = (
            "name",
            "directory",
            "variables",
            "require_distinct_approver",
            "run_time_limit_seconds",
            "notify",
        )

    def clean_directory(self) -> str:
        directory: str = self.cleaned_data["directory"]
        try:
            workspace_directory_validate(directory=directory)
        except RunError as exc:
            raise forms.ValidationError(str(exc)) from None
        return directory

    def clean_run_time_limit_seconds(self) -> int | None:
        limit: int | None = self.cleaned_data["run_time_limit_seconds"]
        most = run_time_limit_max()
        if limit is not None and limit > most:
            raise forms.ValidationError(
                f"At most {most:,} seconds: a plan or apply runs within the infra workers' "
                f"time limit, with {settings.TERRAFORM_CANCEL_GRACE_SECONDS:g} s for terraform "
                "to stop cleanly when it is reached."
            )
        if limit == 0:
            raise forms.ValidationError("Give at least one second, or leave it empty.")
        return limit

    def clean_variables(self) -> dict[str, Any]:
        variables = self.cleaned_data["variables"]
        if not isinstance(variables, dict):
            raise forms.ValidationError("Give the variables as a JSON object.")
        bad = [name for name in variables if not TERRAFORM_VARIABLE_NAME.fullmatch(str(name))]
        if bad:
            raise forms.ValidationError(
                "Not a terraform variable name (a letter or _, then letters, digits, _ or -): "
                + ", ".join(repr(name) for name in bad)
            )
        return variables


class SecretForm(forms.ModelForm):
    class Meta:
        model = TerraformSecret
        fields = ("variable", "source", "reference")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reference"].help_text = (
            f"Environment: a name starting with {settings.TERRAFORM_SECRET_ENV_PREFIX}; "
            f"SSM: under {', '.join(settings.TERRAFORM_SECRET_SSM_PREFIXES)}; "
            f"Secrets Manager: under {', '.join(settings.TERRAFORM_SECRET_MANAGER_PREFIXES)}."
        )

    def clean_variable(self) -> str:
        variable: str = self.cleaned_data["variable"]
        if not TERRAFORM_VARIABLE_NAME.fullmatch(variable):
            raise forms.ValidationError(
                "Not a terraform variable name (a letter or _, then letters, digits, _ or -)."
            )
        return variable

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        source, reference = cleaned.get("source"), cleaned.get("reference")
        if source and reference:
            try:
                secret_reference_check(source=source, reference=reference)
            except SecretReferenceRefused as exc:
                self.add_error("reference", str(exc))
        return cleaned


class SecretInline(admin.TabularInline):
    model = TerraformSecret
    form = SecretForm
    extra = 0


class DestroyConfirmForm(forms.Form):
    confirm_name = forms.CharField(label="Type the workspace name to confirm")

    def __init__(self, *args: Any, workspace: TerraformWorkspace, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workspace = workspace

    def clean_confirm_name(self) -> str:
        name: str = self.cleaned_data["confirm_name"]
        if name != self.workspace.name:
            raise forms.ValidationError("That is not the workspace's name; nothing was queued.")
        return name
