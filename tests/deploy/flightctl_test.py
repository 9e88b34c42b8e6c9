#!/usr/bin/env python3
"""deploy/flightctl: the fleets and hook rules against a JSON schema of the
documented fields (deploy/flightctl/schema/), then deliberately broken
copies, each of which must be refused (so the check is known to bite).

Also: placeholders only in the fields flightctl renders and only in the
documented Go-template forms; each inline hook rule file (delivered under
/etc/flightctl/hooks.d/) validated as a hook file; hook directories in lower
case; and the gateway's inline sluice.yaml, rendered for a sample device,
accepted by `sluice check-config` (when the binary is given).

  flightctl_test.py [SLUICE_BINARY]     exit 77 without python3-jsonschema/yaml
"""
import copy
import os
import re
import subprocess
import sys
import tempfile

try:
    import jsonschema
    import yaml
except ImportError as e:
    print(f"SKIP: {e} (install python3-jsonschema python3-yaml)")
    sys.exit(77)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FC = os.path.join(ROOT, "deploy", "flightctl")
HOOKS = ("beforeupdating", "afterupdating", "beforerebooting", "afterrebooting")
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def load_schema(name):
    with open(os.path.join(FC, "schema", name)) as f:
        s = yaml.safe_load(f)
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s)


FLEET = load_schema("fleet.schema.json")
HOOK = load_schema("hook-rules.schema.json")

# Go-template actions flightctl documents for device templates: a field of
# .metadata, index/getOrDefault on labels, piped through upper/lower/replace.
ARG = r'(\.metadata\.name|\.metadata\.labels\.[A-Za-z0-9_]+|' \
      r'index \.metadata\.labels "[^"]+"|' \
      r'getOrDefault \.metadata\.labels "[^"]+" "[^"]*")'
FUNC = r'(upper|lower|replace "[^"]*" "[^"]*")'
ACTION = re.compile(r'^\{\{ *(' + FUNC + ' )?' + ARG + r'( *\| *' + FUNC + r')* *\}\}$')
# Fields whose placeholders flightctl renders (managing-fleets.md).
RENDERED = (r"spec\.template\.spec\.os\.image",
            r"spec\.template\.spec\.config\.\d+\.gitRef\.(targetRevision|path)",
            r"spec\.template\.spec\.config\.\d+\.httpRef\.(suffix|filePath)",
            r"spec\.template\.spec\.config\.\d+\.inline\.\d+\.(content|path)")


def placeholder_errors(doc, where=""):
    errs = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            errs += placeholder_errors(v, f"{where}.{k}" if where else k)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            errs += placeholder_errors(v, f"{where}.{i}")
    elif isinstance(doc, str) and "{{" in doc:
        if not any(re.fullmatch(r, where) for r in RENDERED):
            errs.append(f"{where}: placeholder in a field flightctl does not render")
        for m in re.findall(r"\{\{.*?\}\}", doc):
            if not ACTION.match(m):
                errs.append(f"{where}: {m} is not a documented template form")
    return errs


def render(text, name, labels):
    def one(m):
        expr = m.group(0)[2:-2].strip()
        parts = [p.strip() for p in expr.split("|")]
        first = parts[0]
        fm = re.match(r'(upper|lower) (.*)$', first)
        pre = None
        if fm:
            pre, first = fm.group(1), fm.group(2)
        if first == ".metadata.name":
            val = name
        elif first.startswith(".metadata.labels."):
            val = labels[first.split(".", 3)[3]]
        elif first.startswith("index "):
            val = labels[re.findall(r'"([^"]+)"', first)[0]]
        else:
            k, d = re.findall(r'"([^"]*)"', first)
            val = labels.get(k, d)
        for f in ([pre] if pre else []) + parts[1:]:
            if f == "upper":
                val = val.upper()
            elif f == "lower":
                val = val.lower()
            else:
                a, b = re.findall(r'"([^"]*)"', f)
                val = val.replace(a, b)
        return val
    return re.sub(r"\{\{.*?\}\}", one, text)


def fleet_errors(doc):
    errs = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in FLEET.iter_errors(doc)]
    errs += placeholder_errors(doc)
    for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("config", []) or []:
        for f in c.get("inline", []) if isinstance(c, dict) else []:
            p = f.get("path", "")
            m = re.match(r"^/etc/flightctl/hooks\.d/([^/]+)/[^/]+\.yaml$", p)
            if p.startswith("/etc/flightctl/hooks.d/") and (not m or m.group(1) not in HOOKS):
                errs.append(f"{p}: hook rules go in /etc/flightctl/hooks.d/<hook in lower case>/*.yaml")
            if m:
                errs += [f"{p}: {e.message}"
                         for e in HOOK.iter_errors(yaml.safe_load(f.get("content", "")))]
    return errs


def hook_errors(rel, doc):
    parts = rel.split(os.sep)
    errs = [] if len(parts) == 3 and parts[1] in HOOKS and parts[2].endswith(".yaml") \
        else [f"{rel}: not hooks.d/<hook in lower case>/NAME.yaml"]
    return errs + [f"{rel}: {e.message}" for e in HOOK.iter_errors(doc)]


def main():
    sluice = sys.argv[1] if len(sys.argv) > 1 else None
    fleets = sorted(f for f in os.listdir(FC) if f.startswith("fleet-") and f.endswith(".yaml"))
    check(len(fleets) >= 2, f"fleets found: {fleets}")
    docs = {}
    for f in fleets:
        with open(os.path.join(FC, f)) as fh:
            docs[f] = yaml.safe_load(fh)
        errs = fleet_errors(docs[f])
        check(not errs, f"{f} valid" + "".join("\n       " + e for e in errs))

    hooks = {}
    for dirpath, _, files in os.walk(os.path.join(FC, "hooks.d")):
        for f in files:
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, FC)
            with open(path) as fh:
                hooks[rel] = yaml.safe_load(fh)
            errs = hook_errors(rel, hooks[rel])
            check(not errs, f"{rel} valid" + "".join("\n       " + e for e in errs))
    check(hooks, "at least one hook rule file")

    # Broken copies: every one must be refused.
    gw = docs.get("fleet-gateway.yaml")
    ms = docs.get("fleet-microshift.yaml")
    hk = hooks.get(os.path.join("hooks.d", "afterupdating", "50-sluice.yaml"))

    def broken(label, base, mutate, errors_of):
        d = copy.deepcopy(base)
        mutate(d)
        errs = errors_of(d)
        check(bool(errs), f"broken copy refused: {label}" +
              (f" ({errs[0][:110]})" if errs else ""))

    rp = lambda d: d["spec"]["rolloutPolicy"]
    tpl = lambda d: d["spec"]["template"]["spec"]
    broken("successThreshold misspelt", gw,
           lambda d: rp(d).update(successTreshold=rp(d).pop("successThreshold")), fleet_errors)
    broken("strategy not BatchSequence", gw,
           lambda d: rp(d)["deviceSelection"].update(strategy="AllAtOnce"), fleet_errors)
    broken("batch limit 110%", gw,
           lambda d: rp(d)["deviceSelection"]["sequence"].append({"limit": "110%"}), fleet_errors)
    broken("disruption budget without a bound", gw,
           lambda d: rp(d)["disruptionBudget"].pop("maxUnavailable"), fleet_errors)
    broken("OS image :latest", gw,
           lambda d: tpl(d)["os"].update(image="registry.example.com/edge/rhel9-sluice:latest"),
           fleet_errors)
    broken("inline file with a relative path", gw,
           lambda d: tpl(d)["config"][0]["inline"][0].update(path="etc/sluice/sluice.yaml"),
           fleet_errors)
    broken("config provider with two sources", gw,
           lambda d: tpl(d)["config"][0].update(gitRef={"repository": "x", "targetRevision": "v1", "path": "/"}),
           fleet_errors)
    broken("Disk monitor without a path", gw,
           lambda d: tpl(d)["resources"][0].pop("path"), fleet_errors)
    broken("placeholder in a field that is not rendered", gw,
           lambda d: tpl(d)["config"][1]["secretRef"].update(name="{{ .metadata.name }}"),
           fleet_errors)
    broken("undocumented template function", gw,
           lambda d: tpl(d)["config"][0]["inline"][0].update(
               content=tpl(d)["config"][0]["inline"][0]["content"] + '# {{ .metadata.labels.site | default "x" }}\n'),
           fleet_errors)
    broken("inline hook in a camel-case directory", ms,
           lambda d: tpl(d)["config"][1]["inline"][0].update(
               path="/etc/flightctl/hooks.d/afterUpdating/50-sluice-microshift.yaml"), fleet_errors)
    broken("inline hook with a timeout without unit", ms,
           lambda d: tpl(d)["config"][1]["inline"][0].update(
               content=tpl(d)["config"][1]["inline"][0]["content"].replace("timeout: 2m", "timeout: 120")),
           fleet_errors)
    if hk:
        he = lambda d: hook_errors(os.path.join("hooks.d", "afterupdating", "x.yaml"), d)
        broken("hook run not an absolute path", hk, lambda d: d[0].update(run="sluice ctl reload"), he)
        broken("hook run through a pipe", hk, lambda d: d[0].update(run="/usr/bin/sluice ctl reload | tee x"), he)
        broken("hook op 'changed'", hk, lambda d: d[0]["if"][0].update(op=["changed"]), he)
        broken("hook key misspelt (timout)", hk, lambda d: d[0].update(timout=d[0].pop("timeout")), he)
        broken("hook in directory afterUpdating", hk,
               lambda d: None, lambda d: hook_errors(os.path.join("hooks.d", "afterUpdating", "x.yaml"), d))

    # Every fleet's sluice.yaml, rendered for a sample device, must be a
    # config the daemon accepts.
    rendered = []
    for f, d in sorted(docs.items()):
        for c in tpl(d).get("config", []):
            for i in c.get("inline", []):
                if i["path"] == "/etc/sluice/sluice.yaml":
                    rendered.append((f, render(i["content"], "gw-berlin-017",
                                               {"site": "berlin", "role": "x"})))
    check(len(rendered) >= 2, f"{len(rendered)} fleets carry a sluice.yaml")
    for f, text in rendered if sluice else []:
        check("id: gw-berlin-017" in text and "site-berlin." in text,
              f"{f}: template renders the device name and site label")
        with tempfile.TemporaryDirectory() as tmp:
            cfg = os.path.join(tmp, "sluice.yaml")
            with open(cfg, "w") as fh:
                fh.write(text)
            key = os.path.join(tmp, "kafka-client.key")
            with open(key, "w") as fh:
                fh.write("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n")
            os.chmod(key, 0o400)
            env = dict(os.environ, SLUICE_KAFKA_SSL_KEY_LOCATION=key,
                       SLUICE_NODE_DATA_DIR=os.path.join(tmp, "data"))
            p = subprocess.run([sluice, "check-config", "-c", cfg], env=env,
                               capture_output=True, text=True)
            check(p.returncode == 0, f"{f}: rendered sluice.yaml passes sluice check-config"
                  + ("" if p.returncode == 0 else "\n       " + (p.stdout + p.stderr).strip()))
    if not sluice:
        print("note: no sluice binary given: rendered config not checked")

    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
