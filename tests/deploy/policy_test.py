#!/usr/bin/env python3
"""Every rule of tests/deploy/policy.py can fail: each case breaks a copy of a
rendered manifest (the golden files, which deploy_render keeps equal to what
kubectl kustomize renders) in one way and asserts that the policy reports
that rule, and only that rule. The unbroken renders pass.

    policy_test.py GOLDEN_DIR
"""
import copy
import os
import sys
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import policy  # noqa: E402

GOLDEN = None


def load(name):
    with open(os.path.join(GOLDEN, name + ".yaml"), encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if d]


def first(docs, kind):
    return next(d for d in docs if d["kind"] == kind)


def pod(docs):
    return first(docs, "StatefulSet")["spec"]["template"]["spec"]


def ctr(docs):
    return pod(docs)["containers"][0]


def cfg_edit(docs, fn):
    cm = first(docs, "ConfigMap")
    c = yaml.safe_load(cm["data"]["sluice.yaml"])
    fn(c)
    cm["data"]["sluice.yaml"] = yaml.safe_dump(c)


def vol(docs, name):
    return next(v for v in pod(docs)["volumes"] if v["name"] == name)


def mount(docs, name):
    return next(m for m in ctr(docs)["volumeMounts"] if m["name"] == name)


def probe(docs, which):
    return ctr(docs)[which]["httpGet"]


# rule id -> [(what is broken, function breaking a copy of base.yaml)]
BREAKS = {
    "run-as-user": [
        ("pod runAsUser", lambda d: pod(d)["securityContext"].update(runAsUser=1001)),
        ("container runAsUser", lambda d: ctr(d)["securityContext"].update(runAsUser=0)),
        ("pod fsGroup", lambda d: pod(d)["securityContext"].update(fsGroup=1001)),
    ],
    "non-root": [
        ("runAsNonRoot dropped", lambda d: (pod(d)["securityContext"].pop("runAsNonRoot"),
                                            ctr(d)["securityContext"].pop("runAsNonRoot"))),
    ],
    "drop-all": [
        ("drop NET_RAW only", lambda d: ctr(d)["securityContext"]["capabilities"].update(drop=["NET_RAW"])),
        ("add NET_ADMIN", lambda d: ctr(d)["securityContext"]["capabilities"].update(add=["NET_ADMIN"])),
    ],
    "seccomp": [
        ("Unconfined", lambda d: (pod(d)["securityContext"].pop("seccompProfile"),
                                  ctr(d)["securityContext"].update(seccompProfile={"type": "Unconfined"}))),
        ("none", lambda d: (pod(d)["securityContext"].pop("seccompProfile"),
                            ctr(d)["securityContext"].pop("seccompProfile"))),
    ],
    "privilege-escalation": [
        ("allowed", lambda d: ctr(d)["securityContext"].update(allowPrivilegeEscalation=True)),
        ("unset", lambda d: ctr(d)["securityContext"].pop("allowPrivilegeEscalation")),
    ],
    "read-only-root": [
        ("writable root", lambda d: ctr(d)["securityContext"].update(readOnlyRootFilesystem=False)),
    ],
    "host": [
        ("hostNetwork", lambda d: pod(d).update(hostNetwork=True)),
        ("hostPort", lambda d: ctr(d)["ports"][0].update(hostPort=7000)),
    ],
    "volumes": [
        ("hostPath", lambda d: pod(d)["volumes"].append({"name": "h", "hostPath": {"path": "/var"}})),
    ],
    "file-modes": [
        ("config 0666", lambda d: vol(d, "config")["configMap"].update(defaultMode=0o666)),
        ("keys 0644", lambda d: vol(d, "tls")["secret"].update(defaultMode=0o644)),
    ],
    "probes": [
        ("no startupProbe", lambda d: ctr(d).pop("startupProbe")),
        ("liveness on /readyz", lambda d: probe(d, "livenessProbe").update(path="/readyz")),
        ("readiness on /healthz", lambda d: probe(d, "readinessProbe").update(path="/healthz")),
        ("readiness on the http port", lambda d: probe(d, "readinessProbe").update(port="http")),
        ("liveness on a number that is not admin", lambda d: probe(d, "livenessProbe").update(port=8080)),
        ("plain HTTP against the TLS admin port", lambda d: probe(d, "startupProbe").pop("scheme")),
    ],
    "resources": [
        ("no limits", lambda d: ctr(d)["resources"].pop("limits")),
        ("no cpu request", lambda d: ctr(d)["resources"]["requests"].pop("cpu")),
        ("limit below measured RSS", lambda d: ctr(d)["resources"]["limits"].update(memory="32Mi")),
        ("request below measured RSS", lambda d: ctr(d)["resources"]["requests"].update(memory="8Mi")),
    ],
    "no-subpath": [
        ("config via subPath", lambda d: mount(d, "config").update(subPath="sluice.yaml")),
        ("tls via subPath", lambda d: mount(d, "tls").update(subPath="tls.crt")),
    ],
    "config": [
        ("config mounted elsewhere", lambda d: mount(d, "config").update(mountPath="/etc/other")),
        # without the config the admin port is unknown: the probes cannot be checked
        ("no ConfigMap volume", lambda d: vol(d, "config").update(configMap={"name": "missing"}), {"probes"}),
    ],
    "image-pinned": [
        ("tag only", lambda d: ctr(d).update(image="registry.example.com/sluice/sluice:0.1.0")),
        ("short digest", lambda d: ctr(d).update(image="registry.example.com/sluice/sluice@sha256:abc")),
    ],
    "automount": [
        ("pod token", lambda d: pod(d).update(automountServiceAccountToken=True)),
        ("ServiceAccount token", lambda d: first(d, "ServiceAccount").pop("automountServiceAccountToken")),
    ],
    "ports": [
        ("containerPort 80", lambda d: ctr(d)["ports"][1].update(containerPort=80)),
        ("Service port 443", lambda d: first(d, "Service")["spec"]["ports"][0].update(port=443)),
        ("config binds :443", lambda d: cfg_edit(d, lambda c: c["listeners"]["http"].update(address="0.0.0.0:443"))),
    ],
    "identity": [
        ("NODE_NAME from metadata.name", lambda d: ctr(d)["env"][0]["valueFrom"]["fieldRef"].update(fieldPath="metadata.name")),
        ("SLUICE_NODE_ID fixed", lambda d: ctr(d)["env"][1].update(value="edge-1")),
    ],
    "storage": [
        ("PVC 2500Mi", lambda d: first(d, "StatefulSet")["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"].update(storage="2500Mi")),
        ("budget 4GiB on a 3Gi PVC", lambda d: cfg_edit(d, lambda c: c["store"].update(budget_bytes="4GiB"))),
        ("budget from env", lambda d: ctr(d)["env"].append({"name": "SLUICE_STORE_BUDGET_BYTES", "value": "3GiB"})),
        ("ReadWriteMany", lambda d: first(d, "StatefulSet")["spec"]["volumeClaimTemplates"][0]["spec"].update(accessModes=["ReadWriteMany"])),
        ("store on emptyDir", lambda d: mount(d, "data").update(name="tmp")),
    ],
    "replicas": [
        ("two replicas", lambda d: first(d, "StatefulSet")["spec"].update(replicas=2)),
    ],
    "grace": [
        ("grace 2 s", lambda d: pod(d).update(terminationGracePeriodSeconds=2)),
    ],
    "workload": [
        ("a Deployment", lambda d: d.append({"kind": "Deployment", "metadata": {"name": "x"}})),
    ],
}


def openshift_sets(docs):
    return [d for d in docs if d["kind"] == "StatefulSet"]


OPENSHIFT_BREAKS = {
    "one-per-node": [
        ("two pinned to one node", lambda d: openshift_sets(d)[1]["spec"]["template"]["spec"]["nodeSelector"].update(
            {"kubernetes.io/hostname": openshift_sets(d)[0]["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"]})),
        ("one not pinned", lambda d: openshift_sets(d)[2]["spec"]["template"]["spec"].pop("nodeSelector")),
        ("shared selector", lambda d: [s["spec"]["selector"]["matchLabels"].pop("app.kubernetes.io/instance")
                                       for s in openshift_sets(d)]),
    ],
}


class PolicyTest(unittest.TestCase):
    def rules(self, docs):
        return [r for _, r, _ in policy.Checker().check(docs)]

    def test_renders_pass(self):
        for name in ("base", "microshift", "openshift"):
            with self.subTest(name):
                self.assertEqual(policy.Checker().check(load(name)), [])

    def assert_breaks(self, name, breaks):
        clean = load(name)
        for rule, cases in breaks.items():
            for what, fn, *also in cases:
                with self.subTest(rule=rule, broken=what):
                    docs = copy.deepcopy(clean)
                    fn(docs)
                    got = self.rules(docs)
                    self.assertIn(rule, got, f"{what}: not reported")
                    self.assertEqual(set(got) - set(*also), {rule}, f"{what}: other rules fired too")

    def test_each_rule_fails_on_base(self):
        self.assert_breaks("base", BREAKS)

    def test_each_rule_fails_on_openshift(self):
        self.assert_breaks("openshift", OPENSHIFT_BREAKS)

    def test_every_rule_has_a_break(self):
        import re
        with open(policy.__file__, encoding="utf-8") as f:
            src = f.read()
        ids = set(re.findall(r'self\.bad\([^,]+,\s*"([a-z-]+)"', src))
        self.assertEqual(ids - set(BREAKS) - set(OPENSHIFT_BREAKS), set(),
                         "rules without a negative case")


if __name__ == "__main__":
    GOLDEN = sys.argv.pop(1) if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "golden")
    unittest.main(verbosity=1)
