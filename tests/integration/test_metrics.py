"""GET /metrics on [admin] metrics_listen: the Prometheus text format,
checked by promtool and scraped by a real prometheus; the counters match
what the test sent."""
import json
import re
import socket
import subprocess
import urllib.request

import pytest

from helpers import free_port, http_get as get, replica_of, sidecar_for, wait_until

SAMPLE = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')


def scrape(port):
    code, body = get(port, "/metrics")
    assert code == 200
    return body


def parse(text):
    """{(name, frozenset of label pairs): value}"""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(after, before, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_pass_promtool_and_count_what_was_sent(env, master):
    rep = replica_of(env, master.port)
    port = free_port()
    sc = sidecar_for(env, master, [rep], admin={"metrics_listen": f"127.0.0.1:{port}"},
                     routing={"read_from": "prefer-replica"},
                     clients={"max_connections_per_ip": "4"})
    m, r = f"127.0.0.1:{master.port}", f"127.0.0.1:{rep.port}"
    before = parse(scrape(port))

    w = sc.client()
    for i in range(37):
        w.set(f"k{i}", i)
    w.set("s", "text")
    for _ in range(3):                          # 3 error replies from the master
        with pytest.raises(Exception):
            w.incr("s")
    wait_until(lambda: rep.client().get("k36") == b"36", what="the replica caught up")
    reader = sc.client()                        # never wrote: reads go to the replica
    for i in range(25):
        assert reader.get(f"k{i}") == str(i).encode()
    p = w.pipeline(transaction=True)            # MULTI, SET, EXEC on a lease
    p.set("t", 1)
    p.execute()
    w.execute_command("PROXY", "RESUME")        # answered by the proxy
    bad = sc.raw()                              # a protocol error: a close, no request
    bad.sendall(b"*1\r\n$x\r\n")
    assert bad.recv(200).startswith(b"-ERR") and bad.recv(10) == b""
    # 4 connections from 127.0.0.5, a fifth refused (max_connections_per_ip)
    held = [socket.create_connection(("127.0.0.1", sc.port), source_address=("127.0.0.5", 0))
            for _ in range(5)]
    wait_until(lambda: value(parse(scrape(port)), "redis_sidecar_connections_refused_total",
                             reason="per_ip") == 1, what="the refusal counted")
    # the transaction's lease comes back once its RESET is answered
    wait_until(lambda: value(parse(scrape(port)), "redis_sidecar_links", node=m,
                             state="lease_idle") == 1, what="the lease idle again")

    text = scrape(port)
    check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                           capture_output=True)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), \
        check.stdout + check.stderr
    after = parse(text)

    req, rep_ = "redis_sidecar_requests_total", "redis_sidecar_replies_total"
    assert delta(after, before, req, **{"class": "write", "destination": "master"}) == 41
    assert delta(after, before, rep_, **{"class": "write", "destination": "master",
                                         "result": "ok"}) == 38
    assert delta(after, before, rep_, **{"class": "write", "destination": "master",
                                         "result": "error"}) == 3
    assert delta(after, before, req, **{"class": "read", "destination": "replica"}) == 25
    assert delta(after, before, rep_, **{"class": "read", "destination": "replica",
                                         "result": "ok"}) == 25
    assert delta(after, before, req, **{"class": "read", "destination": "master"}) == 0
    assert delta(after, before, req, **{"class": "stateful", "destination": "master"}) == 3
    # PROXY RESUME; the scrapes and the PROXY INFO polls of sidecar_for are not requests
    assert delta(after, before, req, **{"class": "admin", "destination": "proxy"}) == 1
    for k in ("read", "write", "stateful"):
        assert delta(after, before, req, **{"class": k, "destination": "proxy"}) == 0
    assert delta(after, before, "redis_sidecar_clients_closed_total", reason="protocol_error") == 1

    # round trips: every reply from a node is in its histogram, buckets cumulative
    for node, n in ((m, 41 + 3), (r, 25)):
        cnt = delta(after, before, "redis_sidecar_upstream_latency_seconds_count", node=node)
        assert cnt >= n, (node, cnt)
        buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in after.items()
                          if k[0] == "redis_sidecar_upstream_latency_seconds_bucket"
                          and ("node", node) in k[1]))
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)
        assert buckets[-1][0] == float("inf")
        assert buckets[-1][1] == value(after, "redis_sidecar_upstream_latency_seconds_count",
                                       node=node)
        assert delta(after, before, "redis_sidecar_upstream_requests_total", node=node) >= n

    assert value(after, "redis_sidecar_node_master", node=m) == 1
    assert value(after, "redis_sidecar_node_master", node=r) == 0
    assert value(after, "redis_sidecar_node_up", node=r) == 1
    assert value(after, "redis_sidecar_links", node=m, state="multiplexed") >= 1
    assert value(after, "redis_sidecar_links", node=m, state="leased") == 0
    assert value(after, "redis_sidecar_links", node=m, state="lease_idle") == 1
    assert delta(after, before, "redis_sidecar_leases_taken_total", node=m) == 1
    assert value(after, "redis_sidecar_top_ip_connections", ip="127.0.0.5") == 4
    assert value(after, "redis_sidecar_clients", state="idle") >= 6
    assert value(after, "redis_sidecar_failovers_total") == 0
    assert delta(after, before, "redis_sidecar_client_bytes_received_total") > 41 * 20
    for s in held:
        s.close()


def test_a_real_prometheus_scrapes_the_sidecar(env, master, tmp_path):
    port, web = free_port(), free_port()
    sc = env.sidecar(master, admin={"metrics_listen": f"127.0.0.1:{port}"})
    c = sc.client()
    for i in range(50):
        c.set(f"k{i}", i)
    conf = tmp_path / "prometheus.yml"
    conf.write_text(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: redis-sidecar
    static_configs:
      - targets: ['127.0.0.1:{port}']
""")
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(["prometheus", f"--config.file={conf}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{web}"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def query(q):
        url = f"http://127.0.0.1:{web}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        with urllib.request.urlopen(url, timeout=5) as resp:
            res = json.load(resp)["data"]["result"]
        return float(res[0]["value"][1]) if res else None

    def answers(q, want):
        try:
            return query(q) == want
        except OSError:
            return False
    try:
        wait_until(lambda: answers('up{job="redis-sidecar"}', 1.0), timeout=30,
                   what="prometheus scraped the sidecar")
        wait_until(lambda: answers('redis_sidecar_requests_total'
                                   '{class="write",destination="master"}', 50.0),
                   timeout=10, what="prometheus has the 50 writes")
        assert query('redis_sidecar_upstream_latency_seconds_count') >= 50
    finally:
        prom.kill()
        prom.wait()
        log.close()
