"""Separation of duties, proved from cipherflow.yaml itself.

Run by check.sh (pytest, in .venv-infra). The template is parsed with cfn-lint's loader, which
understands the CloudFormation short tags (!Ref, !Sub, !GetAtt ...). Every reference is resolved to
a concrete sample ARN (sample account, region and parameter values), and IAM action and resource
patterns are matched with wildcard semantics (fnmatch; actions case-insensitive), so a later
`kms:*`, `kms:Decrypt*`, `s3:Put*` or `*` is caught like the literal action. Anything the resolver
cannot follow counts as "*" (matches everything): the checks fail closed.

Checks:
  (a) nothing lets the pipeline role use the consumer key to decrypt, and the key policy says so;
  (b) the consumer role writes nothing and reads only the share prefix;
  (c) the pipeline role cannot delete from the ledger bucket, which has Object Lock;
  (d) every bucket blocks public access, enforces TLS and has default encryption;
  (e) every trail validates its log files and records S3 data events for the pipeline buckets.
Each check is also run on mutated copies of the template, to show that it catches what it must.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest
from cfnlint.decode import cfn_yaml

TEMPLATE = Path(__file__).with_name("cipherflow.yaml")

PIPELINE_ROLE = "PipelineRole"
CONSUMER_ROLE = "ConsumerRole"
CONSUMER_KEY = "ConsumerKey"
LEDGER_BUCKET = "LedgerBucket"
SHARE_BUCKET = "ShareBucket"
SHARE_PREFIX = "share/"
DATA_BUCKETS = ("LandingBucket", "StateBucket", "ShareBucket", "LedgerBucket")
DATA_EVENT_BUCKETS = ("LandingBucket", "ShareBucket", "StateBucket")

PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "111122223333",
    "AWS::StackName": "cipherflow",
    "AWS::URLSuffix": "amazonaws.com",
}
# Values for parameters without a default.
SAMPLE_PARAMETERS = {
    "ConsumerPrincipalArn": "arn:aws:iam::444455556666:role/consumer-reader",
    "CodeS3Bucket": "artifacts-bucket",
    "CodeS3Key": "cipherflow-lambda/bootstrap.zip",
}
ACCOUNT = PSEUDO["AWS::AccountId"]
ROOT_PRINCIPALS = {f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT}

# Actions that give the plaintext of a data key wrapped with the consumer key, directly
# (Decrypt), by moving it under another key (ReEncryptFrom), or by granting oneself either
# (CreateGrant, PutKeyPolicy).
DECRYPT_EQUIVALENT = ("kms:Decrypt", "kms:ReEncryptFrom", "kms:CreateGrant", "kms:PutKeyPolicy")
# What an account-root statement must never hold on the consumer key: with it, any IAM policy in
# the account could let a principal decrypt.
ROOT_MUST_NOT_DELEGATE = ("kms:Decrypt", "kms:ReEncryptFrom")
S3_WRITE_ACTIONS = (
    "s3:PutObject",
    "s3:PutObjectAcl",
    "s3:PutObjectTagging",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging",
    "s3:AbortMultipartUpload",
    "s3:RestoreObject",
    "s3:ReplicateObject",
    "s3:ReplicateDelete",
    "s3:BypassGovernanceRetention",
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketPolicy",
    "s3:PutBucketAcl",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutEncryptionConfiguration",
    "s3:PutBucketPublicAccessBlock",
)
LEDGER_DESTRUCTIVE = (
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:BypassGovernanceRetention",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketPolicy",
)


# ------------------------------------------------------------------------------------------------
# Loading and resolving
# ------------------------------------------------------------------------------------------------
def load_template() -> dict:
    # cfn-lint's node classes -> plain dicts and lists, so copies can be mutated freely.
    return json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE))))


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class Resolver:
    """Turns CloudFormation expressions into concrete sample strings ('*' when unknown)."""

    def __init__(self, template: dict):
        self.t = template
        self.resources: dict = template.get("Resources", {})
        self.parameters: dict = template.get("Parameters", {})

    def type_of(self, logical: str) -> str:
        return self.resources.get(logical, {}).get("Type", "")

    def props(self, logical: str) -> dict:
        return self.resources.get(logical, {}).get("Properties", {}) or {}

    def ref(self, name: str) -> str:
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            param = self.parameters[name]
            if "Default" in param:
                return str(param["Default"])
            return SAMPLE_PARAMETERS.get(name, "*")
        typ = self.type_of(name)
        if typ == "AWS::S3::Bucket":
            return self._name(name, "BucketName")
        if typ == "AWS::IAM::Role":
            return self._name(name, "RoleName")
        if typ == "AWS::IAM::ManagedPolicy":
            return self.arn(name)
        if typ == "AWS::KMS::Key":
            return f"key-{name}"
        if name in self.resources:
            return name
        return "*"

    def _name(self, logical: str, prop: str) -> str:
        value = self.props(logical).get(prop)
        return self.resolve(value) if value is not None else logical.lower()

    def arn(self, logical: str) -> str:
        typ = self.type_of(logical)
        if typ == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{self.ref(logical)}"
        if typ == "AWS::KMS::Key":
            return f"arn:aws:kms:{PSEUDO['AWS::Region']}:{ACCOUNT}:key/key-{logical}"
        if typ == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT}:role/{self.ref(logical)}"
        if typ == "AWS::IAM::ManagedPolicy":
            name = self.props(logical).get("ManagedPolicyName")
            return f"arn:aws:iam::{ACCOUNT}:policy/{self.resolve(name) if name else logical}"
        if logical in self.resources:
            return f"arn:aws:cloudformation::{ACCOUNT}:resource/{logical}"
        return "*"

    def getatt(self, logical: str, attr: str) -> str:
        if attr == "Arn":
            return self.arn(logical)
        return "*"

    def resolve(self, expr: Any) -> str:
        if isinstance(expr, (str, int, float)) and not isinstance(expr, bool):
            return str(expr)
        if isinstance(expr, dict) and len(expr) == 1:
            (fn, arg), = expr.items()
            if fn == "Ref" and isinstance(arg, str):
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                parts = arg.split(".", 1) if isinstance(arg, str) else arg
                if isinstance(parts, list) and len(parts) == 2 and all(isinstance(p, str) for p in parts):
                    return self.getatt(parts[0], parts[1])
                return "*"
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return self._sub(text, variables)
            if fn == "Fn::Join" and isinstance(arg, list) and len(arg) == 2:
                return str(arg[0]).join(self.resolve(p) for p in as_list(arg[1]))
        return "*"

    def _sub(self, text: str, variables: dict) -> str:
        def one(match: re.Match) -> str:
            token = match.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"
            if token in variables:
                return self.resolve(variables[token])
            if "." in token and not token.startswith("AWS::"):
                logical, attr = token.split(".", 1)
                return self.getatt(logical, attr)
            return self.ref(token)

        return re.sub(r"\$\{([^}]+)\}", one, text)


def action_matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), str(pattern).lower())


def resource_matches(pattern: str, arn: str) -> bool:
    return fnmatch.fnmatchcase(arn, pattern)


def grants_action(stmt: dict, action: str) -> bool:
    """Does this statement (whatever its Effect) cover `action`?"""
    if "NotAction" in stmt:
        return not any(action_matches(p, action) for p in as_list(stmt["NotAction"]))
    return any(action_matches(p, action) for p in as_list(stmt.get("Action")))


def covers_resource(stmt: dict, r: Resolver, arn: str) -> bool:
    if "NotResource" in stmt:
        return not any(resource_matches(r.resolve(p), arn) for p in as_list(stmt["NotResource"]))
    return any(resource_matches(r.resolve(p), arn) for p in as_list(stmt.get("Resource")))


def principals(stmt: dict, r: Resolver) -> list[str]:
    """Principal strings of a resource-policy statement; '*' for anyone (NotPrincipal included)."""
    if "NotPrincipal" in stmt:
        return ["*"]
    principal = stmt.get("Principal")
    if principal == "*" or principal is None:
        return ["*"]
    if isinstance(principal, dict):
        out = []
        for kind, values in principal.items():
            for v in as_list(values):
                value = r.resolve(v)
                out.append(value if kind == "AWS" else f"{kind}:{value}")
        return out
    return ["*"]


def statements(doc: Any) -> list[dict]:
    if not isinstance(doc, dict):
        return []
    return [s for s in as_list(doc.get("Statement")) if isinstance(s, dict)]


def allows(stmt: dict) -> bool:
    return stmt.get("Effect") == "Allow"


# ------------------------------------------------------------------------------------------------
# Who holds which statements
# ------------------------------------------------------------------------------------------------
def identity_statements(t: dict, role: str) -> tuple[list[tuple[str, dict]], list[str]]:
    """All identity-policy statements that apply to `role`, with where they come from, and the
    problems found while collecting them (e.g. a managed policy this template does not define)."""
    r = Resolver(t)
    found: list[tuple[str, dict]] = []
    problems: list[str] = []
    role_props = r.props(role)
    role_name = r.ref(role)
    for policy in as_list(role_props.get("Policies")):
        for s in statements(policy.get("PolicyDocument")):
            found.append((f"{role}.Policies[{policy.get('PolicyName')}]", s))
    local_managed = {
        r.arn(name): name for name, res in r.resources.items() if res.get("Type") == "AWS::IAM::ManagedPolicy"
    }
    for arn_expr in as_list(role_props.get("ManagedPolicyArns")):
        arn = r.resolve(arn_expr)
        if arn not in local_managed:
            problems.append(f"{role} attaches managed policy {arn} that this template does not define")
    for name, res in r.resources.items():
        if res.get("Type") not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            continue
        props = res.get("Properties", {}) or {}
        attached_roles = [r.resolve(x) for x in as_list(props.get("Roles"))]
        if res.get("Type") == "AWS::IAM::RolePolicy":
            attached_roles.append(r.resolve(props.get("RoleName")))
        attached = role_name in attached_roles or "*" in attached_roles
        if res.get("Type") == "AWS::IAM::ManagedPolicy":
            attached = attached or any(
                r.resolve(x) == r.arn(name) for x in as_list(role_props.get("ManagedPolicyArns"))
            )
        if attached:
            for s in statements(props.get("PolicyDocument")):
                found.append((name, s))
    return found, problems


def key_policy(t: dict, key: str) -> list[dict]:
    return statements(Resolver(t).props(key).get("KeyPolicy"))


def bucket_policy(t: dict, bucket: str) -> list[dict]:
    r = Resolver(t)
    out: list[dict] = []
    for res in r.resources.values():
        if res.get("Type") != "AWS::S3::BucketPolicy":
            continue
        props = res.get("Properties", {}) or {}
        if r.resolve(props.get("Bucket")) == r.ref(bucket):
            out.extend(statements(props.get("PolicyDocument")))
    return out


def buckets(t: dict) -> list[str]:
    return sorted(n for n, res in t.get("Resources", {}).items() if res.get("Type") == "AWS::S3::Bucket")


def all_bucket_policy_statements(t: dict) -> list[tuple[str, dict]]:
    return [(b, s) for b in buckets(t) for s in bucket_policy(t, b)]


# ------------------------------------------------------------------------------------------------
# (a) the pipeline can never decrypt with the consumer key
# ------------------------------------------------------------------------------------------------
def check_pipeline_cannot_decrypt(t: dict) -> list[str]:
    r = Resolver(t)
    problems: list[str] = []
    if r.type_of(CONSUMER_KEY) != "AWS::KMS::Key" or r.type_of(PIPELINE_ROLE) != "AWS::IAM::Role":
        return [f"{CONSUMER_KEY} or {PIPELINE_ROLE} missing"]
    key_arn = r.arn(CONSUMER_KEY)
    role_arn = r.arn(PIPELINE_ROLE)

    found, collect_problems = identity_statements(t, PIPELINE_ROLE)
    problems += collect_problems
    for where, s in found:
        if not allows(s):
            continue
        for action in DECRYPT_EQUIVALENT:
            if grants_action(s, action) and covers_resource(s, r, key_arn):
                problems.append(f"{where} {s.get('Sid', '')}: lets the pipeline role {action} on {CONSUMER_KEY}")

    stmts = key_policy(t, CONSUMER_KEY)
    for s in stmts:
        if not allows(s):
            continue
        who = principals(s, r)
        if "*" in who or role_arn in who:
            for action in DECRYPT_EQUIVALENT:
                if grants_action(s, action):
                    problems.append(f"{CONSUMER_KEY} key policy {s.get('Sid', '')}: allows {who} {action}")
        if ROOT_PRINCIPALS & set(who):
            for action in ROOT_MUST_NOT_DELEGATE:
                if grants_action(s, action):
                    problems.append(
                        f"{CONSUMER_KEY} key policy {s.get('Sid', '')}: delegates {action} to IAM (account root)"
                    )

    for name, res in r.resources.items():
        if res.get("Type") == "AWS::KMS::Grant":
            props = res.get("Properties", {}) or {}
            if r.resolve(props.get("GranteePrincipal")) in (role_arn, "*") and r.resolve(props.get("KeyId")) in (
                key_arn,
                r.ref(CONSUMER_KEY),
                "*",
            ):
                if any(action_matches(op, "kms:Decrypt") or op == "ReEncryptFrom" for op in as_list(props.get("Operations"))):
                    problems.append(f"{name}: KMS grant lets the pipeline role decrypt with {CONSUMER_KEY}")

    explicit_deny = [
        s
        for s in stmts
        if s.get("Effect") == "Deny"
        and role_arn in principals(s, r)
        and "Condition" not in s
        and all(grants_action(s, a) for a in DECRYPT_EQUIVALENT)
        and covers_resource(s, r, key_arn)
    ]
    if not explicit_deny:
        problems.append(
            f"{CONSUMER_KEY} key policy has no unconditional Deny of {', '.join(DECRYPT_EQUIVALENT)} for {PIPELINE_ROLE}"
        )
    return problems


# ------------------------------------------------------------------------------------------------
# (b) the consumer writes nothing and reads only the share prefix
# ------------------------------------------------------------------------------------------------
def check_consumer_read_only(t: dict) -> list[str]:
    r = Resolver(t)
    problems: list[str] = []
    if r.type_of(CONSUMER_ROLE) != "AWS::IAM::Role":
        return [f"{CONSUMER_ROLE} missing"]
    share_arn = r.arn(SHARE_BUCKET)
    key_arn = r.arn(CONSUMER_KEY)
    share_objects = f"{share_arn}/{SHARE_PREFIX}"

    found, collect_problems = identity_statements(t, CONSUMER_ROLE)
    problems += collect_problems
    if not found:
        problems.append(f"{CONSUMER_ROLE} has no permissions at all (expected read of the share prefix)")
    for where, s in found:
        if not allows(s):
            continue
        label = f"{where} {s.get('Sid', '')}"
        for action in S3_WRITE_ACTIONS:
            if grants_action(s, action):
                problems.append(f"{label}: consumer role may {action}")
        if "NotAction" in s or "NotResource" in s:
            problems.append(f"{label}: NotAction/NotResource in a consumer statement")
            continue
        resources = [r.resolve(x) for x in as_list(s.get("Resource"))]
        for pattern in as_list(s.get("Action")):
            p = str(pattern).lower()
            if p == "s3:getobject":
                bad = [x for x in resources if not x.startswith(share_objects) or "*" in x[: len(share_objects)]]
                if bad:
                    problems.append(f"{label}: s3:GetObject outside {share_objects}*: {bad}")
            elif p == "s3:listbucket":
                if resources != [share_arn]:
                    problems.append(f"{label}: s3:ListBucket on {resources}, expected only {share_arn}")
                prefixes = [
                    v
                    for op, conds in (s.get("Condition") or {}).items()
                    if op in ("StringLike", "StringEquals")
                    for k, vals in conds.items()
                    if k.lower() == "s3:prefix"
                    for v in as_list(vals)
                ]
                if not prefixes or any(not str(v).startswith(SHARE_PREFIX) for v in prefixes):
                    problems.append(f"{label}: s3:ListBucket not restricted to s3:prefix {SHARE_PREFIX}*")
            elif p == "kms:decrypt":
                if resources != [key_arn]:
                    problems.append(f"{label}: kms:Decrypt on {resources}, expected only {CONSUMER_KEY}")
            else:
                problems.append(f"{label}: consumer role has {pattern}, beyond read-the-share-prefix and unwrap")

    consumer_principals = {r.arn(CONSUMER_ROLE), r.ref("ConsumerPrincipalArn"), "*"}
    for bucket, s in all_bucket_policy_statements(t):
        if allows(s) and consumer_principals & set(principals(s, r)):
            for action in S3_WRITE_ACTIONS:
                if grants_action(s, action):
                    problems.append(f"{bucket} policy {s.get('Sid', '')}: lets the consumer {action}")
    return problems


# ------------------------------------------------------------------------------------------------
# (c) the ledger: append only for the pipeline, Object Lock on
# ------------------------------------------------------------------------------------------------
def check_ledger_append_only(t: dict) -> list[str]:
    r = Resolver(t)
    problems: list[str] = []
    if r.type_of(LEDGER_BUCKET) != "AWS::S3::Bucket":
        return [f"{LEDGER_BUCKET} missing"]
    ledger_arn = r.arn(LEDGER_BUCKET)
    targets = (ledger_arn, f"{ledger_arn}/ledger/records/00000001")
    found, collect_problems = identity_statements(t, PIPELINE_ROLE)
    problems += collect_problems
    for where, s in found:
        if not allows(s):
            continue
        for action in LEDGER_DESTRUCTIVE:
            if grants_action(s, action) and any(covers_resource(s, r, x) for x in targets):
                problems.append(f"{where} {s.get('Sid', '')}: pipeline role may {action} in the ledger bucket")
    role_arn = r.arn(PIPELINE_ROLE)
    for s in bucket_policy(t, LEDGER_BUCKET):
        if allows(s) and ({"*", role_arn} | ROOT_PRINCIPALS) & set(principals(s, r)):
            for action in LEDGER_DESTRUCTIVE:
                if grants_action(s, action):
                    problems.append(f"{LEDGER_BUCKET} policy {s.get('Sid', '')}: allows {action}")

    props = r.props(LEDGER_BUCKET)
    if props.get("ObjectLockEnabled") is not True:
        problems.append(f"{LEDGER_BUCKET}: ObjectLockEnabled is not true")
    lock = props.get("ObjectLockConfiguration") or {}
    retention = (lock.get("Rule") or {}).get("DefaultRetention") or {}
    if lock.get("ObjectLockEnabled") != "Enabled":
        problems.append(f"{LEDGER_BUCKET}: ObjectLockConfiguration.ObjectLockEnabled is not Enabled")
    # The mode may be a parameter: then every value it allows must be a lock mode.
    mode = retention.get("Mode")
    if isinstance(mode, dict) and "Ref" in mode:
        modes = set(as_list(r.parameters.get(mode["Ref"], {}).get("AllowedValues")))
    else:
        modes = {r.resolve(mode)}
    if not modes or not modes <= {"GOVERNANCE", "COMPLIANCE"}:
        problems.append(f"{LEDGER_BUCKET}: default retention mode {sorted(modes)} is not GOVERNANCE/COMPLIANCE")
    if "Days" not in retention and "Years" not in retention:
        problems.append(f"{LEDGER_BUCKET}: no default retention period")
    if (props.get("VersioningConfiguration") or {}).get("Status") != "Enabled":
        problems.append(f"{LEDGER_BUCKET}: versioning is not enabled")
    denied = [
        s
        for s in bucket_policy(t, LEDGER_BUCKET)
        if s.get("Effect") == "Deny"
        and role_arn in principals(s, r)
        and all(grants_action(s, a) for a in ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"))
    ]
    if not denied:
        problems.append(f"{LEDGER_BUCKET} policy does not explicitly deny the pipeline role deletes")
    return problems


# ------------------------------------------------------------------------------------------------
# (d) every bucket: public access blocked, TLS enforced, default encryption
# ------------------------------------------------------------------------------------------------
def _is_false(value: Any) -> bool:
    return value is False or str(value).lower() == "false"


def check_buckets_locked_down(t: dict) -> list[str]:
    r = Resolver(t)
    problems: list[str] = []
    names = buckets(t)
    if not set(DATA_BUCKETS) <= set(names):
        problems.append(f"missing data buckets: {set(DATA_BUCKETS) - set(names)}")
    for b in names:
        props = r.props(b)
        pab = props.get("PublicAccessBlockConfiguration") or {}
        for flag in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            if pab.get(flag) is not True:
                problems.append(f"{b}: PublicAccessBlockConfiguration.{flag} is not true")
        rules = ((props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")) or []
        algorithms = {
            (rule.get("ServerSideEncryptionByDefault") or {}).get("SSEAlgorithm") for rule in rules if isinstance(rule, dict)
        }
        if not algorithms & {"AES256", "aws:kms", "aws:kms:dsse"}:
            problems.append(f"{b}: no default encryption")
        if (props.get("VersioningConfiguration") or {}).get("Status") != "Enabled":
            problems.append(f"{b}: versioning is not enabled")
        ownership = [x.get("ObjectOwnership") for x in ((props.get("OwnershipControls") or {}).get("Rules") or [])]
        if ownership != ["BucketOwnerEnforced"]:
            problems.append(f"{b}: ObjectOwnership is not BucketOwnerEnforced")

        arn = r.arn(b)
        policy = bucket_policy(t, b)
        tls = [
            s
            for s in policy
            if s.get("Effect") == "Deny"
            and principals(s, r) == ["*"]
            and all(grants_action(s, a) for a in ("s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject"))
            and covers_resource(s, r, arn)
            and covers_resource(s, r, f"{arn}/any/key")
            and any(
                _is_false(v)
                for k, v in ((s.get("Condition") or {}).get("Bool") or {}).items()
                if k.lower() == "aws:securetransport"
            )
        ]
        if not tls:
            problems.append(f"{b}: bucket policy does not deny requests without TLS (aws:SecureTransport false)")
        if b in DATA_BUCKETS:
            wrong_sse = [
                s
                for s in policy
                if s.get("Effect") == "Deny"
                and principals(s, r) == ["*"]
                and grants_action(s, "s3:PutObject")
                and "s3:x-amz-server-side-encryption" in ((s.get("Condition") or {}).get("StringNotEquals") or {})
            ]
            sse_c = [
                s
                for s in policy
                if s.get("Effect") == "Deny"
                and principals(s, r) == ["*"]
                and grants_action(s, "s3:PutObject")
                and _is_false(
                    ((s.get("Condition") or {}).get("Null") or {}).get("s3:x-amz-server-side-encryption-customer-algorithm")
                )
            ]
            if not wrong_sse:
                problems.append(f"{b}: bucket policy does not deny uploads that ask for another encryption")
            if not sse_c:
                problems.append(f"{b}: bucket policy does not deny SSE-C uploads")
    return problems


# ------------------------------------------------------------------------------------------------
# (e) the trail
# ------------------------------------------------------------------------------------------------
def _covered_by_event_selectors(trail: dict, arn: str) -> bool:
    for selector in as_list(trail.get("EventSelectors")):
        for dr in as_list(selector.get("DataResources")):
            if dr.get("Type") == "AWS::S3::Object":
                if any(arn.startswith(v) or v in ("arn:aws:s3", "arn:aws:s3:::") for v in dr.get("_resolved", [])):
                    return True
    for selector in as_list(trail.get("AdvancedEventSelectors")):
        fields = {f.get("Field"): f for f in as_list(selector.get("FieldSelectors"))}
        category = fields.get("eventCategory", {})
        rtype = fields.get("resources.type", {})
        if "Data" not in as_list(category.get("Equals")) or "AWS::S3::Object" not in as_list(rtype.get("Equals")):
            continue
        arn_field = fields.get("resources.ARN")
        if arn_field is None:
            return True
        if any(arn.startswith(v) for v in arn_field.get("_resolved", [])):
            return True
    return False


def check_trail(t: dict) -> list[str]:
    r = Resolver(t)
    problems: list[str] = []
    trails = [n for n, res in r.resources.items() if res.get("Type") == "AWS::CloudTrail::Trail"]
    if not trails:
        return ["no AWS::CloudTrail::Trail"]
    for name in trails:
        props = copy.deepcopy(r.props(name))
        if props.get("EnableLogFileValidation") is not True:
            problems.append(f"{name}: EnableLogFileValidation is not true")
        if props.get("IsMultiRegionTrail") is not True:
            problems.append(f"{name}: IsMultiRegionTrail is not true")
        if props.get("IsLogging") is not True:
            problems.append(f"{name}: IsLogging is not true")
        for selector in as_list(props.get("EventSelectors")):
            for dr in as_list(selector.get("DataResources")):
                dr["_resolved"] = [r.resolve(v) for v in as_list(dr.get("Values"))]
        for selector in as_list(props.get("AdvancedEventSelectors")):
            for f in as_list(selector.get("FieldSelectors")):
                if f.get("Field") == "resources.ARN":
                    f["_resolved"] = [r.resolve(v) for v in as_list(f.get("StartsWith"))]
        for b in DATA_EVENT_BUCKETS:
            if not _covered_by_event_selectors(props, f"{r.arn(b)}/some/object"):
                problems.append(f"{name}: no S3 data events for {b}")
    return problems


CHECKS: dict[str, Callable[[dict], list[str]]] = {
    "a": check_pipeline_cannot_decrypt,
    "b": check_consumer_read_only,
    "c": check_ledger_append_only,
    "d": check_buckets_locked_down,
    "e": check_trail,
}


# ------------------------------------------------------------------------------------------------
# Tests on the template as written
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


def test_a_pipeline_role_cannot_decrypt_with_consumer_key(template):
    assert check_pipeline_cannot_decrypt(template) == []


def test_a_consumer_key_is_rsa_encrypt_decrypt(template):
    props = Resolver(template).props(CONSUMER_KEY)
    assert props.get("KeySpec") in ("RSA_2048", "RSA_3072", "RSA_4096")
    assert props.get("KeyUsage") == "ENCRYPT_DECRYPT"


def test_a_pipeline_role_can_wrap(template):
    # The positive half: the pipeline does have what sealing needs (GetPublicKey, Encrypt).
    r = Resolver(template)
    found, _ = identity_statements(template, PIPELINE_ROLE)
    for action in ("kms:GetPublicKey", "kms:Encrypt"):
        assert any(
            allows(s) and grants_action(s, action) and covers_resource(s, r, r.arn(CONSUMER_KEY)) for _, s in found
        ), action


def test_b_consumer_role_is_read_only_on_share_prefix(template):
    assert check_consumer_read_only(template) == []


def test_c_pipeline_cannot_delete_from_locked_ledger(template):
    assert check_ledger_append_only(template) == []


def test_d_every_bucket_blocks_public_access_enforces_tls_and_encrypts(template):
    assert check_buckets_locked_down(template) == []


def test_e_trail_validates_logs_and_records_data_events(template):
    assert check_trail(template) == []


def test_state_key_rotates(template):
    props = Resolver(template).props("StateKey")
    assert props.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
    assert props.get("EnableKeyRotation") is True


def test_state_envelope_key_is_the_pipelines_alone(template):
    # The pipeline's own envelope key (its private state is sealed to it): RSA, the pipeline
    # role can read its public key and unwrap, the consumer role is granted nothing on it, and
    # the key policy lets no one else decrypt (not even through IAM: use is not delegated).
    r = Resolver(template)
    props = r.props("StateEnvelopeKey")
    assert props.get("KeySpec") in ("RSA_2048", "RSA_3072", "RSA_4096")
    assert props.get("KeyUsage") == "ENCRYPT_DECRYPT"
    arn = r.arn("StateEnvelopeKey")
    found, _ = identity_statements(template, PIPELINE_ROLE)
    for action in ("kms:GetPublicKey", "kms:Decrypt"):
        assert any(allows(s) and grants_action(s, action) and covers_resource(s, r, arn) for _, s in found), action
    found, _ = identity_statements(template, CONSUMER_ROLE)
    assert not [
        sid for sid, s in found if allows(s) and grants_action(s, "kms:Decrypt") and covers_resource(s, r, arn)
    ]
    for s in key_policy(template, "StateEnvelopeKey"):
        if allows(s) and grants_action(s, "kms:Decrypt"):
            assert principals(s, r) == [r.arn(PIPELINE_ROLE)], principals(s, r)


# ------------------------------------------------------------------------------------------------
# Negative self-tests: each mutation must be caught by its check
# ------------------------------------------------------------------------------------------------
def _statement(t: dict, resource: str, sid: str, where: Iterable[str] = ("Properties", "PolicyDocument")) -> dict:
    node = t["Resources"][resource]
    for key in where:
        node = node[key]
    return next(s for s in node["Statement"] if s.get("Sid") == sid)


def _add_action(t, resource, sid, action, where=("Properties", "PolicyDocument")):
    s = _statement(t, resource, sid, where)
    s["Action"] = as_list(s["Action"]) + [action]


def _append(t, resource, stmt, where=("Properties", "PolicyDocument")):
    node = t["Resources"][resource]
    for key in where:
        node = node[key]
    node["Statement"].append(stmt)


def _remove(t, resource, sid, where=("Properties", "PolicyDocument")):
    node = t["Resources"][resource]
    for key in where:
        node = node[key]
    node["Statement"] = [s for s in node["Statement"] if s.get("Sid") != sid]


KEY_POLICY = ("Properties", "KeyPolicy")

MUTATIONS: list[tuple[str, str, Callable[[dict], None]]] = [
    ("a", "kms:Decrypt added to the pipeline policy", lambda t: _add_action(t, "PipelinePolicy", "WrapForConsumer", "kms:Decrypt")),
    ("a", "kms:Decrypt* added to the pipeline policy", lambda t: _add_action(t, "PipelinePolicy", "WrapForConsumer", "kms:Decrypt*")),
    ("a", "kms:* on * in the pipeline policy", lambda t: _append(t, "PipelinePolicy", {"Effect": "Allow", "Action": "kms:*", "Resource": "*"})),
    ("a", "* on * in a new inline policy of the pipeline role", lambda t: t["Resources"][PIPELINE_ROLE]["Properties"].update(
        Policies=[{"PolicyName": "oops", "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}}])),
    ("a", "NotAction that leaves kms:Decrypt in", lambda t: _append(t, "PipelinePolicy", {"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"})),
    ("a", "an AWS managed policy attached to the pipeline role", lambda t: t["Resources"][PIPELINE_ROLE]["Properties"].update(
        ManagedPolicyArns=["arn:aws:iam::aws:policy/PowerUserAccess"])),
    ("a", "kms:Decrypt for the pipeline role in the key policy", lambda t: _add_action(t, CONSUMER_KEY, "PipelineReadsPublicKey", "kms:Decrypt", KEY_POLICY)),
    ("a", "kms:* for root in the key policy (Decrypt left to IAM)", lambda t: _statement(t, CONSUMER_KEY, "AccountAdministersKeyButCannotUseIt", KEY_POLICY).update(Action="kms:*")),
    ("a", "kms:Decrypt for everyone in the key policy", lambda t: _append(t, CONSUMER_KEY, {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*"}, KEY_POLICY)),
    ("a", "explicit Deny removed from the key policy", lambda t: _remove(t, CONSUMER_KEY, "PipelineNeverUnwraps", KEY_POLICY)),
    ("a", "explicit Deny made conditional", lambda t: _statement(t, CONSUMER_KEY, "PipelineNeverUnwraps", KEY_POLICY).update(
        Condition={"Bool": {"aws:ViaAWSService": "false"}})),
    ("b", "s3:Put* added to the consumer policy", lambda t: _add_action(t, "ConsumerPolicy", "ReadSharePrefix", "s3:Put*")),
    ("b", "s3:DeleteObject added to the consumer policy", lambda t: _add_action(t, "ConsumerPolicy", "ReadSharePrefix", "s3:DeleteObject")),
    ("b", "consumer reads the whole share bucket", lambda t: _statement(t, "ConsumerPolicy", "ReadSharePrefix").update(
        Resource={"Fn::Sub": "${ShareBucket.Arn}/*"})),
    ("b", "consumer lists without the prefix condition", lambda t: _statement(t, "ConsumerPolicy", "ListSharePrefixOnly").pop("Condition")),
    ("b", "consumer may read the ledger bucket", lambda t: _append(t, "ConsumerPolicy", {"Effect": "Allow", "Action": "s3:GetObject", "Resource": {"Fn::Sub": "${LedgerBucket.Arn}/*"}})),
    ("b", "consumer gets kms:Encrypt", lambda t: _add_action(t, "ConsumerPolicy", "UnwrapWithConsumerKey", "kms:Encrypt")),
    ("b", "share bucket policy lets the consumer role write", lambda t: _append(t, "ShareBucketPolicy", {
        "Effect": "Allow", "Principal": {"AWS": {"Fn::GetAtt": [CONSUMER_ROLE, "Arn"]}}, "Action": "s3:*", "Resource": "*"})),
    ("c", "s3:DeleteObject added to the ledger append", lambda t: _add_action(t, "PipelinePolicy", "AppendLedger", "s3:DeleteObject")),
    ("c", "s3:* on * for the pipeline", lambda t: _append(t, "PipelinePolicy", {"Effect": "Allow", "Action": "s3:*", "Resource": "*"})),
    ("c", "object lock switched off", lambda t: t["Resources"][LEDGER_BUCKET]["Properties"].pop("ObjectLockEnabled")),
    ("c", "ledger delete deny removed", lambda t: _remove(t, "LedgerBucketPolicy", "PipelineNeverDeletesOrUnlocksLedger")),
    ("d", "share bucket public ACLs allowed", lambda t: t["Resources"][SHARE_BUCKET]["Properties"]["PublicAccessBlockConfiguration"].update(BlockPublicAcls=False)),
    ("d", "TLS deny removed from the ledger bucket", lambda t: _remove(t, "LedgerBucketPolicy", "DenyInsecureTransport")),
    ("d", "TLS deny on the log bucket narrowed to GetObject", lambda t: _statement(t, "LogBucketPolicy", "DenyInsecureTransport").update(Action="s3:GetObject")),
    ("d", "no default encryption on the landing bucket", lambda t: t["Resources"]["LandingBucket"]["Properties"].pop("BucketEncryption")),
    ("d", "state bucket encryption deny removed", lambda t: _remove(t, "StateBucketPolicy", "DenyUploadsNotUsingSseKms")),
    ("d", "a new bucket without any of it", lambda t: t["Resources"].update(Extra={"Type": "AWS::S3::Bucket", "Properties": {}})),
    ("e", "log file validation off", lambda t: t["Resources"]["Trail"]["Properties"].update(EnableLogFileValidation=False)),
    ("e", "share bucket dropped from data events", lambda t: t["Resources"]["Trail"]["Properties"]["AdvancedEventSelectors"][1]["FieldSelectors"][2].update(
        StartsWith=[{"Fn::Sub": "${LandingBucket.Arn}/"}, {"Fn::Sub": "${StateBucket.Arn}/"}])),
    ("e", "single-region trail", lambda t: t["Resources"]["Trail"]["Properties"].update(IsMultiRegionTrail=False)),
]


@pytest.mark.parametrize("check,what,mutate", MUTATIONS, ids=[f"{c}: {w}" for c, w, _ in MUTATIONS])
def test_checker_catches_mutation(template, check, what, mutate):
    mutated = copy.deepcopy(template)
    mutate(mutated)
    assert CHECKS[check](mutated), f"check ({check}) missed: {what}"
