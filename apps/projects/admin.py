from django.contrib import admin

from apps.projects.models import Membership, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "task_type", "created_by", "created_at"]
    list_filter = ["task_type"]
    search_fields = ["name"]
    readonly_fields = ["created_by", "created_at"]
    inlines = [MembershipInline]
