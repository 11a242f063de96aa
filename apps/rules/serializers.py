"""API shapes of rules and decisions."""

from rest_framework import serializers

from apps.rules.models import DecisionAction, Rule, RuleDecision, RuleKind, RuleOrigin, RuleStatus


class RuleSerializer(serializers.ModelSerializer):
    # Plain strings in the schema: choice enums named "kind"/"status" would collide with the
    # jobs API's in the OpenAPI components.
    kind = serializers.CharField(read_only=True, help_text="keyword, regex, prompt or similarity")
    status = serializers.CharField(read_only=True, help_text="suggested, accepted or rejected")
    origin = serializers.CharField(read_only=True, help_text="proposed, manual or seed")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    claimed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Rule
        fields = [
            "id",
            "kind",
            "definition",
            "key",
            "label",
            "description",
            "status",
            "origin",
            "round_number",
            "evidence",
            "stats",
            "score",
            "decisions_needed",
            "version",
            "claimed_by",
            "claimed_until",
            "created_by",
            "decided_by",
            "decided_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class DecisionSerializer(serializers.ModelSerializer):
    action = serializers.CharField(read_only=True, help_text="accept, reject, skip, edit or undo")
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = RuleDecision
        fields = ["id", "user", "action", "before", "after", "created_at", "undone"]
        read_only_fields = fields


class RuleDetailSerializer(RuleSerializer):
    decisions = DecisionSerializer(many=True, read_only=True)

    class Meta(RuleSerializer.Meta):
        fields = [*RuleSerializer.Meta.fields, "decisions"]
        read_only_fields = fields


class RuleFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=RuleStatus.choices, required=False)
    origin = serializers.ChoiceField(choices=RuleOrigin.choices, required=False)
    kind = serializers.ChoiceField(choices=RuleKind.choices, required=False)
    round = serializers.IntegerField(required=False, min_value=0)


class RuleCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[("keyword", "Keyword"), ("regex", "Regex")])
    label = serializers.CharField(help_text="Label index or name.")
    words = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        max_length=100,
        help_text="Keyword rules: words or phrases (whole words).",
    )
    mode = serializers.ChoiceField(choices=["any", "all"], default="any")
    case_sensitive = serializers.BooleanField(default=False)
    pattern = serializers.CharField(
        required=False, trim_whitespace=False, help_text="Regex rules: an RE2 pattern."
    )
    flags = serializers.RegexField(r"^[ims]{0,3}$", default="i")


class DecisionEditsSerializer(serializers.Serializer):
    label = serializers.CharField(required=False)
    words = serializers.ListField(child=serializers.CharField(max_length=200), required=False)
    answer_words = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False
    )
    mode = serializers.ChoiceField(choices=["any", "all"], required=False)
    pattern = serializers.CharField(required=False, trim_whitespace=False)
    threshold = serializers.FloatField(required=False)


class DecisionCreateSerializer(serializers.Serializer):
    action = serializers.ChoiceField(
        choices=[
            DecisionAction.ACCEPT,
            DecisionAction.REJECT,
            DecisionAction.SKIP,
            DecisionAction.EDIT,
        ]
    )
    expected_version = serializers.IntegerField(
        min_value=1, help_text="The rule's `version` you saw; 409 when it moved on."
    )
    edits = DecisionEditsSerializer(required=False)


class DecisionResultSerializer(serializers.Serializer):
    rule = RuleSerializer()
    decision = DecisionSerializer(allow_null=True)


class PreviewRequestSerializer(serializers.Serializer):
    definition = serializers.JSONField(help_text="A rule definition (`Rule.definition`).")


class PreviewSampleSerializer(serializers.Serializer):
    example_id = serializers.IntegerField()
    html = serializers.CharField(help_text="The text, HTML-escaped, matches in <mark>.")


class PreviewSerializer(serializers.Serializer):
    description = serializers.CharField()
    error = serializers.CharField()
    pool_total = serializers.IntegerField()
    pool_matches = serializers.IntegerField()
    coverage = serializers.FloatField()
    dev_matches = serializers.IntegerField()
    dev_labeled = serializers.IntegerField()
    dev_correct = serializers.IntegerField()
    dev_precision = serializers.FloatField(
        allow_null=True,
        help_text="smoothed: (dev_correct + 1) / (dev_labeled + 2); null without a gold dev match",
    )
    test_matches = serializers.IntegerField()
    samples = PreviewSampleSerializer(many=True)
    elapsed_ms = serializers.FloatField()
    estimated = serializers.BooleanField(
        help_text="pool/test counts scaled up from a sample (a pattern matching most texts)"
    )
    stopped_after = serializers.IntegerField(
        allow_null=True,
        help_text="set when the time or bytes cap cut matching short: the counts are of the "
        "first this many examples",
    )
    notice = serializers.CharField(help_text='"stopped after N examples: ..." or empty')


class ConflictErrorSerializer(serializers.Serializer):
    error = serializers.DictField(help_text='{"code": "conflict", "message", "details": {rule}}')
