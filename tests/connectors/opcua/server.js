#!/usr/bin/env node
// A test OPC UA server (node-opcua) with the same address space and stdin
// commands as server.py (see there): "port P proxy Q" once listening, then
// set NAME VALUE | bad NAME | cut MS | quit, each answered with one line;
// with --load: rounds (how many rounds of changes so far), stop (no more).
"use strict";
const net = require("net");
const readline = require("readline");
// node-opcua-server's own dependencies (same pinned release; see
// scripts/opcua-servers.sh).
const { OPCUAServer } = require("node-opcua-server");
const { Variant, DataType, VariantArrayType } = require("node-opcua-variant");
const { StatusCodes } = require("node-opcua-status-code");
const { SecurityPolicy, MessageSecurityMode } = require("node-opcua-secure-channel");

const VARS = {
  temp: ["ns=1;s=Plant.Temp", DataType.Double, 21.5],
  count: ["ns=1;i=1001", DataType.Int32, -7],
  running: ["ns=1;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63", DataType.Boolean, true],
  label: ["ns=1;b=AQIDBA==", DataType.String, "hello"],
  big: ["ns=1;s=Plant.Big", DataType.UInt64, [0xffffffff, 0xffffffff]],
  ratio: ["ns=1;s=Plant.Ratio", DataType.Float, 0.25],
  small: ["ns=1;s=Plant.Small", DataType.Int16, -300],
  octet: ["ns=1;s=Plant.Octet", DataType.Byte, 200],
  when: ["ns=1;s=Plant.When", DataType.DateTime, new Date(Date.UTC(2024, 0, 2, 3, 4, 5))],
  vector: ["ns=1;s=Plant.Vector", DataType.Double, [1.5, -2.0, 3.25]],
  sensor: ["ns=1;s=Plant.Sensor", DataType.Double, 1.0],
  // larger than one 64 KiB chunk: responses carrying it come in several
  blob: ["ns=1;s=Plant.Blob", DataType.String, "0123456789".repeat(15000)],
};

function arg(name, def) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : def;
}

function freePort() {
  return new Promise((res) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
  });
}

function convert(dt, text) {
  if (dt === DataType.Boolean) return text === "1" || text === "true";
  if (dt === DataType.String) return text;
  if (dt === DataType.DateTime) return new Date(Number(text));
  if (dt === DataType.UInt64 || dt === DataType.Int64) {
    const b = BigInt(text);
    return [Number(b >> 32n), Number(b & 0xffffffffn)];
  }
  return Number(text);
}

function makeProxy(target) {
  let refuseUntil = 0;
  const conns = new Set();
  const srv = net.createServer((c) => {
    if (Date.now() < refuseUntil) return c.destroy();
    const s = net.connect(target, "127.0.0.1");
    const pair = [c, s];
    conns.add(pair);
    const end = () => { c.destroy(); s.destroy(); conns.delete(pair); };
    c.on("error", end); s.on("error", end);
    c.on("close", end); s.on("close", end);
    c.pipe(s); s.pipe(c);
  });
  return {
    srv,
    cut(ms) {
      refuseUntil = Date.now() + ms;
      for (const [c, s] of conns) { c.destroy(); s.destroy(); }
      conns.clear();
    },
  };
}

(async () => {
  let port = Number(arg("--port", "0"));
  if (!port) port = await freePort();
  const load = Number(arg("--load", "0"));
  const rate = Number(arg("--rate", "1"));
  const server = new OPCUAServer({
    port,
    hostname: "127.0.0.1",
    resourcePath: "/sluice/",
    securityPolicies: [SecurityPolicy.None],
    securityModes: [MessageSecurityMode.None],
    allowAnonymous: true,
    maxConnectionsPerEndpoint: 20,
    serverCapabilities: { maxSessions: 20, maxSubscriptionsPerSession: 10,
                          maxMonitoredItems: 200000,
                          maxMonitoredItemsPerCall: 100000 },
    userManager: { isValidUser: (u, p) => u === "operator" && p === "s3cret" },
  });
  await server.initialize();
  const ns = server.engine.addressSpace.getOwnNamespace();
  const objects = server.engine.addressSpace.rootFolder.objects;
  const plant = ns.addFolder(objects, { nodeId: "ns=1;s=Plant", browseName: "Plant" });
  const nodes = {};
  for (const [name, [nid, dt, val]] of Object.entries(VARS)) {
    const arr = Array.isArray(val) && dt !== DataType.UInt64;
    const v = ns.addVariable({
      componentOf: plant, nodeId: nid, browseName: name,
      dataType: dt, valueRank: arr ? 1 : -1,
      value: new Variant({ dataType: dt, value: val,
                           arrayType: arr ? VariantArrayType.Array : VariantArrayType.Scalar }),
    });
    nodes[name] = [v, dt];
  }
  const line = ns.addObject({ organizedBy: plant, nodeId: "ns=1;i=2000", browseName: "Line1" });
  nodes.speed = [ns.addVariable({ componentOf: line, nodeId: "ns=1;i=2001", browseName: "Speed",
    dataType: DataType.Double, value: new Variant({ dataType: DataType.Double, value: 12.5 }) }),
    DataType.Double];
  const loadVars = [];
  if (load) {
    const lf = ns.addFolder(objects, { nodeId: "ns=1;s=Load", browseName: "Load" });
    for (let i = 0; i < load; i++)
      loadVars.push(ns.addVariable({ componentOf: lf, nodeId: `ns=1;s=Load.V${i}`,
        browseName: `V${i}`, dataType: DataType.Double,
        value: new Variant({ dataType: DataType.Double, value: 0 }) }));
  }
  await server.start();
  let proxy = null, pport = 0;
  if (process.argv.includes("--proxy")) {
    proxy = makeProxy(port);
    await new Promise((r) => proxy.srv.listen(Number(arg("--proxy-port", "0")), "127.0.0.1", r));
    pport = proxy.srv.address().port;
  }
  console.log(`port ${port} proxy ${pport}`);
  let rounds = 0, stopped = false;
  if (loadVars.length) {
    let next = Date.now();
    const tick = () => {
      if (stopped) return;
      rounds++;
      const now = new Date();
      for (const v of loadVars)
        v.setValueFromSource(new Variant({ dataType: DataType.Double, value: rounds }),
                             StatusCodes.Good, now);
      next += 1000 / rate;
      setTimeout(tick, Math.max(0, next - Date.now()));
    };
    tick();
  }
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", async (l) => {
    const [cmd, name, ...rest] = l.trim().split(/\s+/);
    try {
      if (cmd === "quit") {
        console.log("ok");
        await server.shutdown(0);
        process.exit(0);
      } else if (cmd === "set") {
        const [v, dt] = nodes[name];
        v.setValueFromSource(new Variant({ dataType: dt, value: convert(dt, rest.join(" ")) }),
                             StatusCodes.Good, new Date());
      } else if (cmd === "bad") {
        const [v, dt] = nodes[name];
        v.setValueFromSource(new Variant({ dataType: dt, value: 0 }),
                             StatusCodes.BadSensorFailure, new Date());
      } else if (cmd === "cut") {
        proxy.cut(Number(name));
      } else if (cmd === "stop") {
        stopped = true;
        console.log(`stopped ${rounds}`);
        return;
      } else if (cmd === "rounds") {
        console.log(`rounds ${rounds}`);
        return;
      } else {
        console.log(`error unknown command ${cmd}`);
        return;
      }
      console.log("ok");
    } catch (e) {
      console.log(`error ${e}`);
    }
  });
  rl.on("close", () => process.exit(0));
})().catch((e) => { console.error(e); process.exit(1); });
