"""Redis URLs (fleet/urls.py): the Sentinel and Cluster forms read without connecting, bad
ones refused in one line with the password masked, every process's client built from them."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis
from redis.crc import key_slot
from redis.sentinel import SentinelConnectionPool

from fleet.config import load_settings, mask_url
from fleet.errors import ConfigError
from fleet.keys import Keys
from fleet.transport import connect
from fleet.transport.aio import aconnect
from fleet.transport.connect import master_address
from fleet.transport.pipe import worker_client
from fleet.transport.slot import SlotRouter
from fleet.urls import CLUSTER, SENTINEL, SINGLE, parse_redis_url


def test_sentinel_url_names_hosts_service_db_and_credentials():
    """`redis+sentinel://user:pass@h1:p1,h2:p2/SERVICE/DB` is read into its parts; a
    percent-encoded password is decoded."""
    target = parse_redis_url("redis+sentinel://app:p%40ss@s1:26379,s2:26380/mymaster/2")
    assert target.kind == SENTINEL and target.service == "mymaster" and target.db == 2
    assert target.hosts == (("s1", 26379), ("s2", 26380))
    assert (target.username, target.password, target.tls) == ("app", "p@ss", False)


def test_sentinel_and_cluster_ports_default_and_db_is_optional():
    """A host without a port is 26379 for a sentinel, 6379 for a cluster node; no db is 0."""
    assert parse_redis_url("redis+sentinel://s1/svc").hosts == (("s1", 26379),)
    assert parse_redis_url("redis+sentinel://s1/svc").db == 0
    assert parse_redis_url("redis+cluster://n1,n2:7001").hosts == (("n1", 6379), ("n2", 7001))


def test_tls_forms_take_ssl_options_and_ipv6_hosts():
    """`rediss+cluster://` and `rediss+sentinel://` are TLS; ssl_* options pass through;
    `[::1]:7000` is an IPv6 host."""
    target = parse_redis_url("rediss+cluster://:pw@[::1]:7000?ssl_cert_reqs=none")
    assert target.kind == CLUSTER and target.tls and target.hosts == (("::1", 7000),)
    assert target.tls_options == {"ssl_cert_reqs": "none"} and target.password == "pw"
    assert parse_redis_url("rediss+sentinel://s1:1/svc").tls


def test_plain_urls_are_left_to_redis_py():
    """redis://, rediss:// and unix:// are one server, read by redis-py itself."""
    for url in ("redis://h:1/0", "rediss://h:1/0", "unix:///tmp/r.sock"):
        assert parse_redis_url(url).kind == SINGLE


@pytest.mark.parametrize(("url", "problem"), [
    ("http://h/0", "must start with redis://"),
    ("redis+sentinel://s1:26379", "names no service"),
    ("redis+sentinel://s1:26379/svc/x", "db 'x' is not a number"),
    ("redis+sentinel://s1:26379/svc/1/2", "is not a number"),
    ("redis+sentinel://s1:port/svc", "port 'port' is not a port number"),
    ("redis+cluster://n1:70000", "is not a port number"),
    ("redis+cluster://n1:7000/1", "only db 0"),
    ("redis+cluster://n1,,n2", "has no name"),
    ("redis+cluster://n1?socket_timeout=1", "socket_timeout not understood"),
    ("rediss+cluster://n1?ssl_cert_reqs=none&db=3", "db not understood"),
])
def test_bad_urls_are_one_line_config_errors(url, problem):
    """Each malformed URL is a ConfigError of one line naming what is wrong."""
    with pytest.raises(ConfigError) as caught:
        parse_redis_url(url)
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_bad_url_errors_mask_the_password():
    """The password never appears in the error, in either form."""
    for url in ("redis+sentinel://u:s3cret@s1:x/svc", "rediss+cluster://:s3cret@n1:99999"):
        with pytest.raises(ConfigError) as caught:
            parse_redis_url(url)
        assert "s3cret" not in str(caught.value) and "***" in str(caught.value)


def test_mask_url_hides_passwords_in_sentinel_and_cluster_forms():
    """`config show`, logs and errors show `user:***@` for every host list."""
    assert mask_url("redis+sentinel://u:pw@s1:1,s2:2/svc/0") == \
        "redis+sentinel://u:***@s1:1,s2:2/svc/0"
    assert mask_url("rediss+cluster://:pw@n1:1,n2:2") == "rediss+cluster://:***@n1:1,n2:2"


def test_settings_accept_the_new_forms_and_name_the_setting_on_a_bad_one():
    """FLEET_REDIS_URL takes the Sentinel and Cluster forms; a bad one names the setting."""
    url = "redis+sentinel://s1:26379,s2:26379/svc"
    assert load_settings(env={"FLEET_REDIS_URL": url})[0].redis_url == url
    with pytest.raises(ConfigError, match=r"redis_url = .*FLEET_REDIS_URL.*names no service"):
        load_settings(env={"FLEET_REDIS_URL": "redis+sentinel://:pw@s1"})


def test_cli_refuses_a_bad_url_with_exit_2_and_no_traceback():
    """`fleet status --redis-url redis+cluster://n1/3` exits 2 with one line, no traceback."""
    result = subprocess.run([sys.executable, "-m", "fleet", "status", "--redis-url",
                             "redis+cluster://:pw@n1/3"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "only db 0" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "pw@" not in result.stderr


def test_sentinel_url_gives_redis_py_master_for_clients():
    """Controller, client and worker clients of a Sentinel URL are redis-py's
    `Sentinel.master_for` (nothing is contacted until a command is sent)."""
    url = "redis+sentinel://u:pw@127.0.0.1:1,127.0.0.1:2/svc/3"
    for client in (connect(url), worker_client(url)):
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "svc"
        assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "pw"
    assert master_address(connect(url)) is None  # no master asked for yet
    assert type(aconnect(url).connection_pool).__name__ == "SentinelConnectionPool"


def test_cluster_url_gives_clients_of_the_namespace_slot():
    """A Cluster URL's clients route to the master of the namespace's one slot; nothing is
    contacted until a command is sent."""
    url = "redis+cluster://127.0.0.1:1,127.0.0.1:2"
    client = connect(url, namespace="shard7")
    router = client.connection_pool.connection_kwargs["router"]
    assert isinstance(router, SlotRouter)
    assert router.slot == key_slot(b"shard7") == key_slot(Keys("shard7").intake.encode())
    with pytest.raises(redis.ConnectionError):
        client.ping()  # nobody listens there: a connection error, which fleet translates
    assert worker_client(url, "shard7").connection_pool.connection_kwargs["router"].slot == \
        router.slot


def test_every_key_of_a_namespace_hashes_to_one_slot():
    """Each key fleet uses carries the namespace's hash tag: one slot per namespace."""
    keys = Keys("orders")
    names = [keys.intake, keys.acks, keys.workers, keys.controller, keys.owner, keys.wake,
             keys.control, keys.generation, keys.receipt("r"), keys.ready("q"),
             keys.worker("w"), keys.reply("r"), keys.cancel("w")]
    assert {key_slot(name.encode()) for name in names} == {key_slot(b"orders")}
