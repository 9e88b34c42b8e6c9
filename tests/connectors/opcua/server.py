#!/usr/bin/env python3
"""A test OPC UA server (asyncua) with a known address space, for the
sluice-opcua tests (tests/connectors/opcua_test.c, loadtest/opcua).

  server.py [--port P] [--proxy [--proxy-port Q]] [--load N --rate HZ]

Prints "port P proxy Q" once listening (Q 0 without --proxy), then obeys
lines on stdin, answering each with one line ("ok" or "error ..."):
  set NAME VALUE   write a variable (its own type); source timestamp = now
  bad NAME         give a variable the status BadSensorFailure
  cut MS           (proxy) drop every proxied connection, refuse new ones
                   for MS milliseconds
  quit             stop
  rounds           (--load) "rounds R": rounds of changes made so far
  stop             (--load) no more changes: "stopped R"
With --load N, N Double variables Load/V0..V{N-1} change at HZ each.
"""
import argparse
import asyncio
import datetime
import socket
import sys
import uuid

from asyncua import Server, ua

NS_URI = "urn:sluice:test"
GUID = uuid.UUID("72962b91-fa75-4ae6-8d28-b404dc7daf63")

# name -> (NodeId text, VariantType, initial value)
VARS = {
    "temp": ("ns=2;s=Plant.Temp", ua.VariantType.Double, 21.5),
    "count": ("ns=2;i=1001", ua.VariantType.Int32, -7),
    "running": ("ns=2;g=72962b91-fa75-4ae6-8d28-b404dc7daf63",
                ua.VariantType.Boolean, True),
    "label": ("ns=2;b=AQIDBA==", ua.VariantType.String, "hello"),
    "big": ("ns=2;s=Plant.Big", ua.VariantType.UInt64, 18446744073709551615),
    "ratio": ("ns=2;s=Plant.Ratio", ua.VariantType.Float, 0.25),
    "small": ("ns=2;s=Plant.Small", ua.VariantType.Int16, -300),
    "octet": ("ns=2;s=Plant.Octet", ua.VariantType.Byte, 200),
    "when": ("ns=2;s=Plant.When", ua.VariantType.DateTime,
             datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)),
    "vector": ("ns=2;s=Plant.Vector", ua.VariantType.Double, [1.5, -2.0, 3.25]),
    "sensor": ("ns=2;s=Plant.Sensor", ua.VariantType.Double, 1.0),
    # larger than one 64 KiB chunk: responses carrying it come in several
    "blob": ("ns=2;s=Plant.Blob", ua.VariantType.String, "0123456789" * 15000),
}
SPEED = ("Line1", "Speed")  # Objects/2:Plant/2:Line1/2:Speed, numeric id


def convert(vt, text):
    if vt == ua.VariantType.Boolean:
        return text in ("1", "true", "True")
    if vt in (ua.VariantType.Double, ua.VariantType.Float):
        return float(text)
    if vt == ua.VariantType.String:
        return text
    if vt == ua.VariantType.DateTime:
        return datetime.datetime.fromtimestamp(int(text) / 1000,
                                               datetime.timezone.utc)
    return int(text)


async def proxy(target_port, listen_port):
    """A TCP forwarder the test can cut."""
    state = {"refuse_until": 0.0, "conns": set()}
    loop = asyncio.get_running_loop()

    async def pipe(r, w):
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                w.write(data)
                await w.drain()
        except Exception:
            pass
        finally:
            try:
                w.close()
            except Exception:
                pass

    async def handle(cr, cw):
        if loop.time() < state["refuse_until"]:
            cw.transport.abort()
            return
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            cw.transport.abort()
            return
        pair = (cw, sw)
        state["conns"].add(pair)
        await asyncio.gather(pipe(cr, sw), pipe(sr, cw))
        state["conns"].discard(pair)

    srv = await asyncio.start_server(handle, "127.0.0.1", listen_port)

    def cut(ms):
        state["refuse_until"] = loop.time() + ms / 1000.0
        for cw, sw in list(state["conns"]):
            cw.transport.abort()
            sw.transport.abort()
        state["conns"].clear()

    return srv, cut


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--proxy", action="store_true")
    ap.add_argument("--proxy-port", type=int, default=0)
    ap.add_argument("--load", type=int, default=0)
    ap.add_argument("--rate", type=float, default=1.0)
    a = ap.parse_args()
    port = a.port
    if port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/sluice/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(NS_URI)
    assert idx == 2, idx
    objs = server.nodes.objects
    plant = await objs.add_folder(ua.NodeId("Plant", idx), ua.QualifiedName("Plant", idx))
    nodes = {}
    for name, (nid, vt, val) in VARS.items():
        v = await plant.add_variable(ua.NodeId.from_string(nid),
                                     ua.QualifiedName(name, idx),
                                     ua.Variant(val, vt))
        nodes[name] = (v, vt)
    line = await plant.add_object(ua.NodeId(2000, idx), ua.QualifiedName(SPEED[0], idx))
    speed = await line.add_variable(ua.NodeId(2001, idx), ua.QualifiedName(SPEED[1], idx),
                                    ua.Variant(12.5, ua.VariantType.Double))
    nodes["speed"] = (speed, ua.VariantType.Double)
    load = []
    if a.load:
        lf = await objs.add_folder(ua.NodeId("Load", idx), ua.QualifiedName("Load", idx))
        for i in range(a.load):
            load.append(await lf.add_variable(ua.NodeId(f"Load.V{i}", idx),
                                              ua.QualifiedName(f"V{i}", idx),
                                              ua.Variant(0.0, ua.VariantType.Double)))
    async with server:
        pport, cut = 0, None
        if a.proxy:
            psrv, cut = await proxy(port, a.proxy_port)
            pport = psrv.sockets[0].getsockname()[1]
        print(f"port {port} proxy {pport}", flush=True)
        loop = asyncio.get_running_loop()

        async def churn():
            """Every variable of Load gets a new value HZ times a second;
            prints how many changes were made when asked (stats)."""
            n = 0
            period = 1.0 / a.rate
            nxt = loop.time()
            while not churn.stopped:
                n += 1
                now = datetime.datetime.now(datetime.timezone.utc)
                for v in load:
                    dv = ua.DataValue(ua.Variant(float(n), ua.VariantType.Double),
                                      SourceTimestamp=now, ServerTimestamp=now)
                    await server.write_attribute_value(v.nodeid, dv)
                churn.rounds = n
                nxt += period
                await asyncio.sleep(max(0.0, nxt - loop.time()))
        churn.rounds = 0
        churn.stopped = False
        if load:
            asyncio.ensure_future(churn())
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            raw = await reader.readline()
            if not raw:
                break
            parts = raw.decode().split(None, 2)
            if not parts:
                continue
            cmd = parts[0]
            try:
                if cmd == "quit":
                    print("ok", flush=True)
                    break
                if cmd == "set":
                    v, vt = nodes[parts[1]]
                    now = datetime.datetime.now(datetime.timezone.utc)
                    dv = ua.DataValue(ua.Variant(convert(vt, parts[2].strip()), vt),
                                      SourceTimestamp=now, ServerTimestamp=now)
                    await server.write_attribute_value(v.nodeid, dv)
                elif cmd == "bad":
                    v, vt = nodes[parts[1]]
                    now = datetime.datetime.now(datetime.timezone.utc)
                    dv = ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure),
                                      SourceTimestamp=now, ServerTimestamp=now)
                    await server.write_attribute_value(v.nodeid, dv)
                elif cmd == "cut":
                    cut(int(parts[1]))
                elif cmd == "stop":
                    churn.stopped = True
                    print(f"stopped {churn.rounds}", flush=True)
                    continue
                elif cmd == "rounds":
                    print(f"rounds {churn.rounds}", flush=True)
                    continue
                else:
                    print(f"error unknown command {cmd}", flush=True)
                    continue
                print("ok", flush=True)
            except Exception as e:  # the test sees the reason
                print(f"error {e!r}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
