"""Who may open each URL: the expectations of the access walk (``test_access_walk.py``).

Every URL pattern in the resolver needs an entry here, by its name (``namespace:name``; the
route itself for an unnamed pattern). A pattern without one fails the walk with a message
naming it — add a line when you add a URL:

- ``"public"``: anyone, logged in or not (the login page).
- ``"user"``: any logged-in user; what it shows is the user's own (their tokens, their
  projects). Anonymous visitors go to the login page (pages) or get 401/403 (API).
- ``"staff"``: staff users (creating projects); everyone else gets 403.
- ``"member"``: members of the project, annotators and admins alike. Anyone else gets 404,
  exactly as for a project that does not exist.
- ``"admin"``: the project's admins. Annotators get 403; non-members 404.
- ``"member+admin-writes"``: members read, admins write (annotators get 403 on writes).

URLs under ``django-admin/`` follow Django's admin site (staff only, its own login page) and
need no entry.
"""

ACCESS = {
    # the root redirects to the projects list (which asks for a login)
    "": "public",
    # accounts
    "accounts:login": "public",
    "accounts:logout": "user",
    "accounts:password_change": "user",
    "accounts:tokens": "user",
    "accounts:revoke_token": "user",
    "accounts:people": "staff",
    "accounts:user_create": "staff",
    "accounts:user_active": "staff",
    "accounts:invite_create": "staff",
    "accounts:invite_revoke": "staff",
    "accounts:invite_accept": "public",
    # projects
    "projects:list": "user",
    "projects:create": "staff",
    "projects:dashboard": "member",
    "projects:settings": "admin",
    "projects:archive": "admin",
    # preference projects (DORM): members annotate and re-judge; admins import and launch
    "alignment:weights": "member",
    "alignment:launch": "admin",
    "alignment:import": "admin",
    "alignment:export": "member",
    "alignment:rejudge": "member",
    "alignment:annotate": "member",
    "alignment:agreement": "member",
    # LLM compression (LoRC): members see it, admins calibrate and switch the proposer
    "lorc:page": "member",
    # distillation (PTLoss): members see students and download them; admins launch and cancel
    "distill:page": "member",
    "distill:launch": "admin",
    "distill:cancel": "admin",
    "distill:download": "member",
    "lorc:launch": "admin",
    "lorc:proposer": "admin",
    "projects:unarchive": "admin",
    "projects:delete": "admin",
    "projects:members": "admin",
    "projects:member_add": "admin",
    "projects:member_role": "admin",
    "projects:member_remove": "admin",
    "projects:member_invite": "admin",
    "projects:member_invite_revoke": "admin",
    # datasets
    "datasets:examples": "member",
    "datasets:examples_count": "member",
    "datasets:example_detail": "member",
    "datasets:label": "member",
    "datasets:disagreements": "member",
    # agreement and guidelines
    "agreement:agreement": "admin",
    "agreement:overlap": "admin",
    "agreement:conflicts": "admin",
    "guidelines:edit": "admin",
    "bulk:bulk": "admin",
    "bulk:history": "admin",
    "bulk:undo": "admin",
    "imports:new": "admin",
    "imports:columns": "admin",
    "imports:preview": "admin",
    "imports:discard": "admin",
    # rules
    "rules:list": "member",
    "rules:review": "member",
    "rules:new": "member",
    "rules:preview": "member",
    "rules:detail": "member",
    "rules:rule_preview": "member",
    "rules:decide": "member",
    "rules:delete": "admin",
    # training
    "training:dashboard": "member",
    "training:launch": "admin",
    "training:cancel": "admin",
    "training:settings": "admin",
    "training:template_preview": "admin",
    # jobs
    "jobs:list": "user",
    "jobs:detail": "member",
    "jobs:status": "member",
    "jobs:cancel": "admin",
    "jobs:project_jobs": "member",
    "jobs:project_selftest": "admin",
    # API
    "api-projects": "user",
    "api-project": "member+admin-writes",
    "api-project-members": "member+admin-writes",
    "api-examples": "member",
    "api-example-detail": "member",
    "api-export": "member",
    "api-jobs": "user",
    "api-job-kinds": "user",
    "api-job-detail": "member",
    "api-job-cancel": "admin",
    "api-project-jobs": "member+admin-writes",
    "api-training": "member",
    # preference projects (DORM)
    "api-pairs": "member",
    "api-pairs-top": "member",
    "api-pairs-export": "member",
    "api-reward-model": "member",
    "api-reward-score": "member",
    "api-predict": "member",
    "api-training-rounds": "member",
    "api-training-jobs": "member+admin-writes",
    "api-training-settings": "member+admin-writes",
    "api-rules": "member",
    "api-rules-next": "member",
    "api-rules-undo": "member",
    "api-rules-preview": "member",
    "api-rule": "member",
    "api-rule-decisions": "member",
    "api-schema": "user",
    "api-docs": "user",
    "api-redoc": "user",
}
