#!/usr/bin/env python3
"""Policy over rendered sluice manifests (kubectl kustomize output).

    policy.py FILE...        exit 0 when every rule holds, else 1, printing
                             one line per violation: FILE: OBJECT: RULE: why

The rules are what OpenShift's SCC restricted-v2 admits and what sluice
needs to run safely under it (docs/deploy/kubernetes.md#checks). Each rule
has an id; tests/deploy/policy_test.py breaks a copy of the manifests once
per rule and asserts that exactly that id is reported.

Measured numbers the rules hold the manifests to (docs/deploy/kubernetes.md
#measured; re-measure with tests/deploy/measure.sh and update both):
"""
import re
import sys

import yaml

MEASURED_PEAK_RSS_MIB = 75  # VmHWM after 20 s of HTTP + native ingest, uplink up
MEASURED_DRAIN_S = 2.6  # SIGTERM -> exit under the same load (worst of 6 stops)

# restricted-v2's volume list (configMap, csi, downwardAPI, emptyDir,
# ephemeral, persistentVolumeClaim, projected, secret).
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                   "persistentVolumeClaim", "projected", "secret"}
NON_TYPE_KEYS = {"name"}
CONFIG_DIR = "/etc/sluice"
GIB = 1 << 30
UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
         "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
SLUICE_SIZE = {"": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
               "TiB": 1 << 40, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30,
               "Ti": 1 << 40, "KB": 1000, "MB": 1000**2, "GB": 1000**3,
               "TB": 1000**4}
DIGEST = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


def quantity(q):
    """Kubernetes quantity (bytes) -> int."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([kMGT]i?|)", str(q))
    if not m:
        raise ValueError(f"unsupported quantity {q!r}")
    return int(float(m.group(1)) * UNITS[m.group(2)])


def sluice_size(s):
    m = re.fullmatch(r"\s*([0-9]+)\s*([KMGT]i?B?|)\s*", str(s))
    if not m or m.group(2) not in SLUICE_SIZE:
        raise ValueError(f"unsupported size {s!r}")
    return int(m.group(1)) * SLUICE_SIZE[m.group(2)]


def cfg_get(cfg, key):
    """A key of sluice's YAML, nested (a: b:) or dotted (a.b:)."""
    if key in cfg:
        return cfg[key]
    head, _, rest = key.partition(".")
    if rest and isinstance(cfg.get(head), dict):
        return cfg_get(cfg[head], rest)
    return None


def port_of(address):
    return int(str(address).rsplit(":", 1)[1]) if address else None


class Checker:
    def __init__(self):
        self.violations = []

    def bad(self, where, rule, why):
        self.violations.append((where, rule, why))

    # -- whole render -----------------------------------------------------
    def check(self, docs):
        docs = [d for d in docs if d]
        configs = {}
        for d in docs:
            if d.get("kind") == "ConfigMap" and "sluice.yaml" in d.get("data", {}):
                configs[d["metadata"]["name"]] = yaml.safe_load(
                    d["data"]["sluice.yaml"]) or {}
        sets = [d for d in docs if d.get("kind") == "StatefulSet"]
        if not sets:
            self.bad("render", "workload", "no StatefulSet rendered")
        for d in docs:
            where = f'{d.get("kind")}/{d.get("metadata", {}).get("name")}'
            kind = d.get("kind")
            if kind == "ServiceAccount" and d.get("automountServiceAccountToken") is not False:
                self.bad(where, "automount", "automountServiceAccountToken is not false")
            if kind == "Service":
                for p in d["spec"].get("ports", []):
                    for f in ("port", "targetPort"):
                        v = p.get(f)
                        if isinstance(v, int) and v < 1024:
                            self.bad(where, "ports", f"{f} {v} < 1024")
            if kind in ("Deployment", "DaemonSet", "Pod", "Job"):
                self.bad(where, "workload", f"unexpected {kind}: sluice runs as a StatefulSet")
            if kind == "StatefulSet":
                self.statefulset(where, d, configs)
        pins = {}
        for d in sets:
            sel = (d["spec"]["template"]["spec"].get("nodeSelector") or {}).get(
                "kubernetes.io/hostname")
            if len(sets) > 1:
                if not sel:
                    self.bad(f'StatefulSet/{d["metadata"]["name"]}', "one-per-node",
                             "several StatefulSets but this one is not pinned to a node")
                elif sel in pins:
                    self.bad(f'StatefulSet/{d["metadata"]["name"]}', "one-per-node",
                             f"pinned to {sel} like {pins[sel]}")
                else:
                    pins[sel] = d["metadata"]["name"]
        if len(sets) > 1:
            selectors = [yaml.safe_dump(d["spec"]["selector"], sort_keys=True) for d in sets]
            if len(set(selectors)) != len(selectors):
                self.bad("render", "one-per-node", "StatefulSets share a pod selector")
        return self.violations

    # -- one StatefulSet --------------------------------------------------
    def statefulset(self, where, d, configs):
        spec = d["spec"]
        pod = spec["template"]["spec"]
        if spec.get("replicas") != 1:
            self.bad(where, "replicas", f"replicas {spec.get('replicas')!r}: one daemon per store")
        if pod.get("automountServiceAccountToken") is not False:
            self.bad(where, "automount", "pod automountServiceAccountToken is not false")
        for f in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(f):
                self.bad(where, "host", f"{f} is set")
        psc = pod.get("securityContext") or {}
        for f in ("runAsUser", "fsGroup"):
            if f in psc:
                self.bad(where, "run-as-user", f"pod securityContext.{f} is set (the SCC picks it)")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if not grace > MEASURED_DRAIN_S * 2:
            self.bad(where, "grace", f"terminationGracePeriodSeconds {grace} is not above "
                     f"2 x the measured drain time {MEASURED_DRAIN_S} s")
        volumes = {}
        for v in pod.get("volumes", []):
            types = set(v) - NON_TYPE_KEYS
            volumes[v["name"]] = types
            for t in types - ALLOWED_VOLUMES:
                self.bad(where, "volumes", f"volume {v['name']}: type {t} not allowed by restricted-v2")
            mode = (v.get("configMap") or v.get("secret") or {}).get("defaultMode", 0o644)
            if mode & 0o022:
                self.bad(where, "file-modes", f"volume {v['name']}: defaultMode {mode:o} "
                         "is writable by group/others (sluice refuses it)")
            if "secret" in v and mode & 0o027:
                self.bad(where, "file-modes", f"volume {v['name']}: defaultMode {mode:o} "
                         "lets others read keys (sluice refuses them)")
        claims = {c["metadata"]["name"]: c for c in spec.get("volumeClaimTemplates", [])}
        for name in claims:
            volumes[name] = {"persistentVolumeClaim"}
        cfg_name = next((v["configMap"]["name"] for v in pod.get("volumes", [])
                         if "configMap" in v), None)
        cfg = configs.get(cfg_name, {}) if cfg_name else {}
        if not cfg_name or cfg_name not in configs:
            self.bad(where, "config", "no ConfigMap volume holding sluice.yaml")
        containers = pod.get("containers", []) + pod.get("initContainers", [])
        for c in containers:
            self.container(f"{where}/{c['name']}", c, psc, volumes, cfg, claims, cfg_name)

    def container(self, where, c, psc, volumes, cfg, claims, cfg_name):
        sc = c.get("securityContext") or {}
        if "runAsUser" in sc:
            self.bad(where, "run-as-user", "securityContext.runAsUser is set (the SCC picks it)")
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            self.bad(where, "non-root", "runAsNonRoot is not true")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            self.bad(where, "drop-all", "capabilities.drop does not contain ALL")
        if caps.get("add"):
            self.bad(where, "drop-all", f"capabilities.add {caps['add']}")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            self.bad(where, "seccomp", f"seccompProfile {seccomp!r}, not RuntimeDefault")
        if sc.get("allowPrivilegeEscalation") is not False:
            self.bad(where, "privilege-escalation", "allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            self.bad(where, "privilege-escalation", "privileged")
        if sc.get("readOnlyRootFilesystem") is not True:
            self.bad(where, "read-only-root", "readOnlyRootFilesystem is not true")
        if not DIGEST.match(str(c.get("image", ""))):
            self.bad(where, "image-pinned", f"image {c.get('image')!r} has no @sha256 digest")
        # ports
        named = {}
        for p in c.get("ports", []):
            named[p.get("name")] = p["containerPort"]
            if p["containerPort"] < 1024:
                self.bad(where, "ports", f"containerPort {p['containerPort']} < 1024")
            if p.get("hostPort"):
                self.bad(where, "host", f"hostPort {p['hostPort']}")
        for key in ("listeners.native.tcp", "listeners.http.address", "admin.address"):
            port = port_of(cfg_get(cfg, key))
            if port is not None and port < 1024:
                self.bad(where, "ports", f"{key} binds port {port} < 1024")
        # probes on the admin port
        admin = port_of(cfg_get(cfg, "admin.address"))
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                            ("readinessProbe", "/readyz")):
            get = (c.get(probe) or {}).get("httpGet")
            if not get:
                self.bad(where, "probes", f"no {probe} httpGet")
                continue
            port = get.get("port")
            port = named.get(port, port) if isinstance(port, str) else port
            if get.get("path") != path:
                self.bad(where, "probes", f"{probe} path {get.get('path')!r}, not {path}")
            if port != admin:
                self.bad(where, "probes", f"{probe} port {get.get('port')!r} is not the admin port {admin}")
            tls = bool(cfg_get(cfg, "admin.tls.cert"))
            if (get.get("scheme", "HTTP") == "HTTPS") != tls:
                self.bad(where, "probes", f"{probe} scheme {get.get('scheme', 'HTTP')} "
                         f"but admin TLS is {'on' if tls else 'off'}")
        # resources
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for f in ("cpu", "memory"):
            if f not in req:
                self.bad(where, "resources", f"no requests.{f}")
        if "memory" not in lim:
            self.bad(where, "resources", "no limits.memory")
        else:
            peak = MEASURED_PEAK_RSS_MIB << 20
            if quantity(lim["memory"]) < 2 * peak:
                self.bad(where, "resources", f"limits.memory {lim['memory']} below 2 x the "
                         f"measured peak RSS ({MEASURED_PEAK_RSS_MIB} MiB)")
            if "memory" in req and quantity(req["memory"]) < peak:
                self.bad(where, "resources", f"requests.memory {req['memory']} below the "
                         f"measured peak RSS ({MEASURED_PEAK_RSS_MIB} MiB)")
        # mounts
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        for m in c.get("volumeMounts", []):
            types = volumes.get(m["name"], set())
            if ("subPath" in m or "subPathExpr" in m) and types & {"configMap", "secret", "projected"}:
                self.bad(where, "no-subpath", f"mount {m['name']} uses subPath: it never updates")
        cfg_mount = next((m for m in c.get("volumeMounts", [])
                          if "configMap" in volumes.get(m["name"], set())), None)
        if cfg_mount and cfg_mount.get("mountPath") != CONFIG_DIR:
            self.bad(where, "config", f"config mounted at {cfg_mount.get('mountPath')}, not {CONFIG_DIR}")
        args = c.get("args") or []
        if "-c" in args and not str(args[args.index("-c") + 1]).startswith(CONFIG_DIR + "/"):
            self.bad(where, "config", "sluice -c does not name a file in the config directory")
        # identity: node.id from the node name
        env = {e["name"]: e for e in c.get("env", [])}
        ref = ((env.get("NODE_NAME") or {}).get("valueFrom") or {}).get("fieldRef") or {}
        if ref.get("fieldPath") != "spec.nodeName":
            self.bad(where, "identity", "NODE_NAME is not the downward-API spec.nodeName")
        if (env.get("SLUICE_NODE_ID") or {}).get("value") != "$(NODE_NAME)" and not cfg_get(cfg, "node.id"):
            self.bad(where, "identity", "node.id is neither in the config nor SLUICE_NODE_ID=$(NODE_NAME)")
        # the store
        data_dir = cfg_get(cfg, "node.data_dir") or "/var/lib/sluice"
        store = next((m for m in c.get("volumeMounts", []) if m.get("mountPath") == data_dir), None)
        if not store or store["name"] not in claims:
            self.bad(where, "storage", f"{data_dir} is not on a volumeClaimTemplate")
            return
        claim = claims[store["name"]]["spec"]
        if claim.get("accessModes") != ["ReadWriteOnce"]:
            self.bad(where, "storage", f"accessModes {claim.get('accessModes')}, not [ReadWriteOnce]")
        size = quantity(claim["resources"]["requests"]["storage"])
        if size % GIB:
            self.bad(where, "storage", f"PVC size {claim['resources']['requests']['storage']} "
                     "is not a whole number of GiB (LVM allocates 1 GiB steps)")
        budget_env = (env.get("SLUICE_STORE_BUDGET_BYTES") or {}).get("value")
        budget = sluice_size(budget_env or cfg_get(cfg, "store.budget_bytes") or "1GiB")
        if size < budget + GIB:
            self.bad(where, "storage", f"PVC size {size >> 20} MiB < store.budget_bytes "
                     f"{budget >> 20} MiB + 1 GiB")
        if mounts.get("tmp") is None and "/tmp" not in [m.get("mountPath") for m in c.get("volumeMounts", [])]:
            self.bad(where, "read-only-root", "no writable /tmp (emptyDir) beside the read-only root")


def main(argv):
    if not argv:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    failed = False
    for path in argv:
        with open(path, encoding="utf-8") as f:
            docs = list(yaml.safe_load_all(f))
        found = Checker().check(docs)
        for where, rule, why in found:
            print(f"{path}: {where}: {rule}: {why}")
        failed = failed or bool(found)
        if not found:
            print(f"{path}: ok ({len([d for d in docs if d])} objects)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
