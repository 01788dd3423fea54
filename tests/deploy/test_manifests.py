"""deploy/ agrees with the code: every YAML parses, every EDI834_* name is a field of Settings,
every `edi834 ...` command line parses with the real CLI parser, probes ask the ports their
container's environment opens, and the three nginx configurations share one partner server.
Reads files only: no network, no docker, no cluster."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.cli import build_parser
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SINGLE = DEPLOY / "single-host"
DOCKER = DEPLOY / "docker"
K8S = DEPLOY / "k8s"
TEMPLATE = SINGLE / "nginx.test.conf.template"
NGINX_CONFS = (SINGLE / "nginx.conf", DOCKER / "nginx.conf")
PLACEHOLDERS = {"LISTEN_PORT", "UPSTREAMS", "CERT", "KEY", "PID", "TMP"}

SETTING_NAMES = frozenset(f"EDI834_{name.upper()}" for name in Settings.model_fields)
SETTING_NAME = re.compile(r"\bEDI834_[A-Z0-9_]*[A-Z0-9]\b")
GATEWAY_IMAGE = "edi834-gateway"
SHELL_STOP = {"|", "||", "&&", ";", "&"}


def default(name: str) -> Any:
    return Settings.model_fields[name].default


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file())


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


def unit_files() -> list[Path]:
    return sorted(p for p in SINGLE.iterdir() if p.suffix in (".service", ".target"))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def unknown_settings(text: str) -> set[str]:
    """EDI834_* names in `text` that are not a field of gateway.settings.Settings."""
    return set(SETTING_NAME.findall(text)) - SETTING_NAMES


def parse_error(argv: list[str]) -> str | None:
    """None when `edi834 ARGV` is accepted by the real parser, else what argparse said."""
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        return f"edi834 {shlex.join(argv)}: rejected by build_parser() (exit {exc.code})"
    return None


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines (systemd EnvironmentFile, docker env_file); comments skipped."""
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{rel(path)}: not KEY=value: {raw!r}"
        env[key.strip()] = value.strip().strip("\"'")
    return env


def grace_seconds(env: dict[str, str]) -> float:
    return float(env.get("EDI834_SHUTDOWN_GRACE_SECONDS", default("shutdown_grace_seconds")))


def seconds(value: str | int) -> float:
    """'45s', '1m30s', '45' or 45 in seconds (compose durations, systemd time spans)."""
    if isinstance(value, int):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(min|ms|h|m|s)?", value)
    assert parts, value
    unit = {"h": 3600, "min": 60, "m": 60, "s": 1, "ms": 0.001, "": 1}
    return sum(float(n) * unit[u] for n, u in parts)


# --- systemd -----------------------------------------------------------------------------------


@dataclass
class Unit:
    path: Path
    sections: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Unit:
        unit = cls(path)
        current: list[tuple[str, str]] | None = None
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = unit.sections.setdefault(line[1:-1], [])
                continue
            assert current is not None, f"{rel(path)}: {line!r} before any [Section]"
            key, sep, value = line.partition("=")
            assert sep, f"{rel(path)}: not Key=value: {raw!r}"
            current.append((key.strip(), value.strip()))
        return unit

    def values(self, section: str, key: str) -> list[str]:
        return [v for k, v in self.sections.get(section, []) if k == key]

    def value(self, section: str, key: str) -> str | None:
        found = self.values(section, key)
        return found[-1] if found else None

    def words(self, section: str, key: str) -> set[str]:
        return {w for v in self.values(section, key) for w in v.split()}


def exec_argv(command: str, instance: str = "9101") -> list[str]:
    """ExecStart=/path/to/edi834 ARGS: the ARGS, with the instance specifier filled in."""
    argv = shlex.split(command.replace("%i", instance).replace("%I", instance))
    argv[0] = argv[0].lstrip("-@:+!")
    assert Path(argv[0]).name == "edi834", f"ExecStart does not run edi834: {command!r}"
    assert "%" not in " ".join(argv), f"unexpanded specifier in {command!r}"
    return argv[1:]


def single_host_env() -> dict[str, str]:
    return read_env_file(SINGLE / "edi834.env")


# --- compose and kubernetes --------------------------------------------------------------------


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def compose() -> dict[str, Any]:
    (doc,) = load_all(DOCKER / "docker-compose.yml")
    return doc


def gateway_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if GATEWAY_IMAGE in str(svc.get("image", ""))
    }


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    files = service.get("env_file", [])
    for name in [files] if isinstance(files, str) else files:
        # .env is the operator's copy of .env.example (the only one in the repository).
        env.update(read_env_file(DOCKER / (".env.example" if name == ".env" else name)))
    env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    return env


def compose_argv(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def k8s_documents() -> list[dict[str, Any]]:
    return [d for p in sorted(K8S.glob("*.yaml")) for d in load_all(p)]


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in k8s_documents() if d.get("kind") == kind]


def config_maps() -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d.get("data", {}) for d in k8s_kind("ConfigMap")}


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every Deployment and Job."""
    return [
        (d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in k8s_documents()
        if d.get("kind") in ("Deployment", "Job")
    ]


def gateway_containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        (name, pod, c)
        for name, pod in pod_specs()
        for c in pod["containers"]
        if GATEWAY_IMAGE in c["image"]
    ]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """What the container sees: its envFrom ConfigMaps, then its own env (literal values)."""
    maps = config_maps()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        env[item["name"]] = str(item.get("value", "<from secret>"))
    return env


def container_argv(container: dict[str, Any]) -> list[str]:
    """The image's ENTRYPOINT is edi834: `args` are its arguments; a `command` must name it."""
    command = [str(c) for c in container.get("command", [])]
    if command:
        assert Path(command[0]).name == "edi834", command
        command = command[1:]
    return command + [str(a) for a in container.get("args", [])]


def container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"container {container['name']} has no port named {port!r}"
    return int(named[port])


def probe_port_setting(argv: list[str]) -> str:
    """The setting that opens a role's /healthz and /readyz: the API port, else the health port."""
    return "EDI834_HTTP_PORT" if argv[0] == "api" else "EDI834_HEALTH_PORT"


def setting_port(env: dict[str, str], name: str) -> int:
    port = int(env.get(name, default(name.removeprefix("EDI834_").lower())))
    assert port, f"{name} is 0 (off) but a probe needs it"
    return port


# --- README ------------------------------------------------------------------------------------


def readme_commands(text: str) -> list[list[str]]:
    """`edi834 ...` argument lists in the fenced shell blocks of a README. A token `edi834` (or
    a path ending in /edi834) starts one unless it is an option's value (`-n edi834`) or ends
    the line (`useradd ... edi834`)."""
    commands = []
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, flags=re.S)
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            for i, token in enumerate(tokens):
                previous = tokens[i - 1] if i else ""
                if Path(token).name != "edi834" or i + 1 == len(tokens):
                    continue
                if previous.startswith("-") and previous != "--":
                    continue
                argv = []
                for word in tokens[i + 1 :]:
                    if word in SHELL_STOP or word.startswith(("<", ">", "2>")):
                        break
                    argv.append(word)
                commands.append(argv)
    return commands


# --- nginx -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Directive:
    name: str
    args: tuple[str, ...]
    block: tuple[Directive, ...] | None = None

    def find(self, name: str, *args: str) -> list[Directive]:
        return [d for d in self.block or () if d.name == name and d.args[: len(args)] == args]


def parse_nginx(text: str) -> Directive:
    """nginx's configuration syntax: `name args;` and `name args { ... }`, # comments, quotes."""
    tokens: list[str] = []
    for match in re.finditer(r"#[^\n]*|\"(?:\\.|[^\"])*\"|'(?:\\.|[^'])*'|[{};]|[^\s{};#]+", text):
        word = match.group()
        if not word.startswith("#"):
            tokens.append(word[1:-1] if word[0] in "\"'" else word)
    position = 0

    def block(closing: bool) -> tuple[Directive, ...]:
        nonlocal position
        out: list[Directive] = []
        words: list[str] = []
        while position < len(tokens):
            word = tokens[position]
            position += 1
            if word == ";":
                out.append(Directive(words[0], tuple(words[1:])))
                words = []
            elif word == "{":
                name, args = words[0], tuple(words[1:])
                out.append(Directive(name, args, block(closing=True)))
                words = []
            elif word == "}":
                assert closing and not words, "unbalanced }"
                return tuple(out)
            else:
                words.append(word)
        assert not closing and not words, "unterminated block or directive"
        return tuple(out)

    return Directive("main", (), block(closing=False))


def render_template(**values: object) -> str:
    defaults: dict[str, object] = {
        "LISTEN_PORT": 8443,
        "UPSTREAMS": "server 127.0.0.1:8834;\nserver 127.0.0.1:8836;",
        "CERT": "/srv/t/tls.crt",
        "KEY": "/srv/t/tls.key",
        "PID": "/srv/t/nginx.pid",
        "TMP": "/srv/t",
    }
    return Template(TEMPLATE.read_text()).substitute({**defaults, **values})


def http_block(conf: Directive) -> Directive:
    (http,) = conf.find("http")
    return http


def partner_server(conf: Directive) -> Directive:
    """The server whose `location /` proxies to the API upstream."""
    found = [
        server
        for server in http_block(conf).find("server")
        if any(loc.find("proxy_pass", "http://edi834_api") for loc in server.find("location", "/"))
    ]
    assert len(found) == 1, f"{len(found)} partner API servers"
    return found[0]


WHERE = {"listen", "server_name", "ssl_certificate", "ssl_certificate_key"}


def server_logic(server: Directive) -> tuple[Directive, ...]:
    """Everything but where it listens and which certificate it shows."""
    return tuple(d for d in server.block or () if d.name not in WHERE)


def upstream_options(conf: Directive) -> tuple[Directive, ...]:
    (upstream,) = http_block(conf).find("upstream", "edi834_api")
    return tuple(d for d in upstream.block or () if d.name != "server")


def size_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", value)
    assert match, value
    number, unit = match.groups()
    return int(number) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit.lower()]


# ===============================================================================================


class TestYaml:
    @pytest.mark.parametrize("path", yaml_files(), ids=rel)
    def test_parses(self, path: Path) -> None:
        assert load_all(path), f"{rel(path)} holds no document"

    def test_the_kustomization_lists_every_manifest(self) -> None:
        (kustomization,) = load_all(K8S / "kustomization.yaml")
        manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
        assert set(kustomization["resources"]) == manifests


class TestSettingNames:
    @pytest.mark.parametrize("path", deploy_files(), ids=rel)
    def test_every_name_is_a_setting(self, path: Path) -> None:
        assert not unknown_settings(path.read_text()), (
            f"{rel(path)} names settings that gateway.settings.Settings does not have"
        )

    def test_a_name_that_is_not_a_setting_is_caught(self) -> None:
        text = "EDI834_HTTP_PORT=8834\n# EDI834_HTTP_PROT=1\n  - name: EDI834_WORKER_CONCURRENCY"
        assert unknown_settings(text) == {"EDI834_HTTP_PROT", "EDI834_WORKER_CONCURRENCY"}

    def test_the_env_file_explains_every_setting(self) -> None:
        # Each setting, set or commented out at its default, sits under a comment that says what
        # it is for (one comment may cover a group of adjacent settings).
        lines = (SINGLE / "edi834.env").read_text().splitlines()
        setting = re.compile(r"#?(EDI834_[A-Z0-9_]+)=")
        found, unexplained = set(), []
        for n, line in enumerate(lines):
            if not (match := setting.match(line)):
                continue
            found.add(match.group(1))
            above = n - 1
            while above >= 0 and setting.match(lines[above]):
                above -= 1
            if above < 0 or not lines[above].startswith("#"):
                unexplained.append(match.group(1))
        assert not unexplained
        assert found >= SETTING_NAMES, f"not in edi834.env: {sorted(SETTING_NAMES - found)}"


class TestCommandLines:
    def test_a_bad_command_line_is_caught(self) -> None:
        assert parse_error(["worker", "--concurrency", "2"]) is None
        assert parse_error(["worker", "--concurency", "2"])
        assert parse_error(["wroker"])
        assert parse_error(["api", "--http-port", "%i"])

    @pytest.mark.parametrize("path", unit_files(), ids=rel)
    def test_systemd_exec_start(self, path: Path) -> None:
        for command in Unit.read(path).values("Service", "ExecStart"):
            assert parse_error(exec_argv(command)) is None

    def test_compose_commands(self) -> None:
        services = gateway_services()
        assert set(services) >= {"migrate", "api", "sftp", "worker"}
        for svc in services.values():
            assert parse_error(compose_argv(svc)) is None

    def test_kubernetes_args(self) -> None:
        roles = set()
        for _, _, container in gateway_containers():
            argv = container_argv(container)
            assert parse_error(argv) is None
            roles.add(argv[0])
        assert roles == {"db", "api", "sftp", "worker"}

    def test_dockerfile_command(self) -> None:
        text = (DOCKER / "Dockerfile").read_text()
        assert re.search(r'^ENTRYPOINT \["edi834"\]$', text, flags=re.M)
        (cmd,) = re.findall(r"^CMD (\[.*\])$", text, flags=re.M)
        assert parse_error(yaml.safe_load(cmd)) is None

    def test_readme_commands(self) -> None:
        commands = readme_commands((DEPLOY / "README.md").read_text())
        assert {argv[0] for argv in commands} >= {"partner", "operator"}
        for argv in commands:
            assert parse_error(argv) is None

    def test_readme_commands_are_found(self) -> None:
        text = "```sh\nkubectl -n edi834 exec -i deploy/x -- edi834 partner list < k \\\n  | x\n```"
        assert readme_commands(text) == [["partner", "list"]]


class TestSystemd:
    ROLES = ("edi834-api@.service", "edi834-sftp.service", "edi834-worker@.service")

    @pytest.mark.parametrize("path", unit_files(), ids=rel)
    def test_sections(self, path: Path) -> None:
        unit = Unit.read(path)
        expected = {"Unit", "Install"} | ({"Service"} if path.suffix == ".service" else set())
        assert set(unit.sections) == expected
        assert unit.value("Unit", "Description")
        if path.suffix == ".service":
            assert unit.values("Service", "ExecStart")
            assert unit.value("Install", "WantedBy") == "edi834.target"

    @pytest.mark.parametrize("name", [*ROLES, "edi834-migrate.service"])
    def test_hardened(self, name: str) -> None:
        unit = Unit.read(SINGLE / name)
        wanted = {
            "User": "edi834",
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "PrivateTmp": "yes",
            "Restart": "on-failure",
            "CapabilityBoundingSet": "",
        }
        assert {k: unit.value("Service", k) for k in wanted} == wanted
        data_dir = single_host_env()["EDI834_DATA_DIR"]
        assert unit.words("Service", "ReadWritePaths") == {data_dir}
        assert unit.values("Service", "EnvironmentFile")[0] == "/etc/edi834/edi834.env"

    @pytest.mark.parametrize("name", list(ROLES))
    def test_roles_wait_for_the_migration_and_outlive_the_grace(self, name: str) -> None:
        unit = Unit.read(SINGLE / name)
        assert "edi834-migrate.service" in unit.words("Unit", "Requires")
        assert "edi834-migrate.service" in unit.words("Unit", "After")
        assert "edi834.target" in unit.words("Unit", "PartOf")
        stop = seconds(unit.value("Service", "TimeoutStopSec") or "90s")
        assert stop > grace_seconds(single_host_env())
        assert "--migrate" not in exec_argv(unit.values("Service", "ExecStart")[0])

    def test_migrate_is_a_oneshot_db_upgrade(self) -> None:
        unit = Unit.read(SINGLE / "edi834-migrate.service")
        assert unit.value("Service", "Type") == "oneshot"
        assert unit.value("Service", "RemainAfterExit") == "yes"
        assert exec_argv(unit.values("Service", "ExecStart")[0]) == ["db", "upgrade"]

    def test_instances_take_their_port_from_the_name(self) -> None:
        api = exec_argv(Unit.read(SINGLE / "edi834-api@.service").values("Service", "ExecStart")[0])
        worker = Unit.read(SINGLE / "edi834-worker@.service").values("Service", "ExecStart")[0]
        assert build_parser().parse_args(api).setting_http_port == 9101
        assert build_parser().parse_args(exec_argv(worker)).setting_health_port == 9101

    def test_one_api_instance_serves_the_dashboard(self) -> None:
        # Every api instance would bind EDI834_DASHBOARD_PORT: off in common, on in one file.
        assert single_host_env()["EDI834_DASHBOARD_ENABLED"] == "false"
        overrides = sorted(SINGLE.glob("api-*.env"))
        assert [read_env_file(p).get("EDI834_DASHBOARD_ENABLED") for p in overrides] == ["true"]
        unit = Unit.read(SINGLE / "edi834-api@.service")
        assert unit.values("Service", "EnvironmentFile")[-1] == "-/etc/edi834/api-%i.env"


class TestProbes:
    def test_kubernetes_probes_ask_the_port_the_env_opens(self) -> None:
        checked = []
        for name, pod, container in gateway_containers():
            argv = container_argv(container)
            if argv[0] == "db":
                continue
            env = container_env(container)
            port = setting_port(env, probe_port_setting(argv))
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                http_get = container[probe]["httpGet"]
                assert http_get["path"] == path, f"{name}: {probe}"
                assert container_port(container, http_get["port"]) == port, f"{name}: {probe}"
            assert pod["terminationGracePeriodSeconds"] > grace_seconds(env), name
            resources = container["resources"]
            assert set(resources) == {"requests", "limits"}, name
            assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
            checked.append(argv[0])
        assert sorted(checked) == ["api", "sftp", "worker"]

    def test_kubernetes_services_reach_a_container_port(self) -> None:
        deployments = {
            tuple(sorted(d["spec"]["selector"]["matchLabels"].items())): d
            for d in k8s_kind("Deployment")
        }
        for service in k8s_kind("Service"):
            selector = tuple(sorted(service["spec"]["selector"].items()))
            (container,) = deployments[selector]["spec"]["template"]["spec"]["containers"]
            for port in service["spec"]["ports"]:
                container_port(container, port["targetPort"])

    def test_kubernetes_sftp_is_port_22_outside(self) -> None:
        (service,) = [s for s in k8s_kind("Service") if s["metadata"]["name"] == "edi834-sftp"]
        assert service["spec"]["type"] == "LoadBalancer"
        (port,) = service["spec"]["ports"]
        (_, _, sftp) = next(c for c in gateway_containers() if container_argv(c[2])[0] == "sftp")
        assert port["port"] == 22
        assert container_port(sftp, port["targetPort"]) == setting_port(
            container_env(sftp), "EDI834_SFTP_PORT"
        )

    def test_kubernetes_autoscales_api_and_worker(self) -> None:
        targets = {h["spec"]["scaleTargetRef"]["name"] for h in k8s_kind("HorizontalPodAutoscaler")}
        assert targets == {"edi834-api", "edi834-worker"}
        (claim,) = k8s_kind("PersistentVolumeClaim")
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]

    def test_compose_healthchecks_ask_the_port_the_env_opens(self) -> None:
        for name, svc in gateway_services().items():
            argv = compose_argv(svc)
            if argv[0] == "db":
                continue
            env = compose_env(svc)
            (url,) = re.findall(r"http://[^'\"\s]+", " ".join(svc["healthcheck"]["test"]))
            assert urlsplit(url).path == "/readyz", name
            assert urlsplit(url).port == setting_port(env, probe_port_setting(argv)), name
            assert seconds(svc["stop_grace_period"]) > grace_seconds(env), name

    def test_compose_roles_share_one_data_volume(self) -> None:
        doc = compose()
        data_dirs = {compose_env(s).get("EDI834_DATA_DIR") for s in gateway_services().values()}
        assert len(data_dirs) == 1
        (data_dir,) = data_dirs
        mounts = {tuple(v) for v in (s["volumes"] for s in gateway_services().values())}
        assert mounts == {(f"edi834-data:{data_dir}",)}
        assert "edi834-data" in doc["volumes"]
        assert "healthcheck" in doc["services"]["postgres"]


class TestNginx:
    def test_the_template_has_exactly_the_placeholders(self) -> None:
        template = Template(TEMPLATE.read_text())
        assert template.is_valid()
        assert set(template.get_identifiers()) == PLACEHOLDERS

    def test_no_placeholder_in_a_comment(self) -> None:
        # UPSTREAMS spans lines: rendered inside a comment, its second line would be live.
        comments = [ln for ln in TEMPLATE.read_text().splitlines() if ln.lstrip().startswith("#")]
        assert not [c for c in comments if "$" in c]

    def test_the_template_runs_unprivileged(self) -> None:
        main = parse_nginx(render_template())
        assert not main.find("user") and not main.find("daemon")
        paths = [d.args[0] for d in main.block or () if d.name in ("pid", "error_log")]
        http = http_block(main)
        paths += [d.args[0] for d in http.block or () if d.name.endswith(("_temp_path", "_log"))]
        temp = {d.name for d in http.block or () if d.name.endswith("_temp_path")}
        assert temp == {
            f"{m}_temp_path" for m in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        }
        assert len(paths) == 8 and all(p.startswith("/srv/t/") for p in paths)
        (listen,) = partner_server(main).find("listen")
        assert listen.args == ("127.0.0.1:8443", "ssl")

    @pytest.mark.parametrize("path", NGINX_CONFS, ids=rel)
    def test_same_partner_server_as_the_template(self, path: Path) -> None:
        tested = parse_nginx(render_template())
        conf = parse_nginx(path.read_text())
        assert server_logic(partner_server(conf)) == server_logic(partner_server(tested))
        assert upstream_options(conf) == upstream_options(tested)

    def test_the_partner_server(self) -> None:
        server = partner_server(parse_nginx(render_template()))

        def one(name: str) -> tuple[str, ...]:
            (d,) = server.find(name)
            return d.args

        assert size_bytes(one("client_max_body_size")[0]) == default("max_body_bytes")
        assert one("proxy_request_buffering") == ("off",)
        assert seconds(one("proxy_read_timeout")[0]) >= 300
        (metrics,) = server.find("location", "=", "/metrics")
        assert metrics.find("return", "404")
        (root,) = server.find("location", "/")
        headers = {d.args[0]: d.args[1] for d in root.find("proxy_set_header")}
        assert headers["X-Forwarded-For"] == "$remote_addr"
        assert headers["X-Forwarded-Proto"] == "$scheme"
        assert headers["Host"] == "$http_host"
        assert one("ssl_certificate") == ("/srv/t/tls.crt",)

    def test_single_host_upstream_lists_the_api_instances(self) -> None:
        conf = parse_nginx((SINGLE / "nginx.conf").read_text())
        (upstream,) = http_block(conf).find("upstream", "edi834_api")
        ports = {int(d.args[0].rsplit(":", 1)[1]) for d in upstream.find("server")}
        dashboard = int(default("dashboard_port"))
        assert default("http_port") in ports and dashboard not in ports
        (dash,) = http_block(conf).find("upstream", "edi834_dashboard")
        assert [d.args[0] for d in dash.find("server")] == [f"127.0.0.1:{dashboard}"]
        assert (SINGLE / f"api-{default('http_port')}.env").exists()

    def test_the_parser(self) -> None:
        conf = parse_nginx("a 1; b { c \"x; y\" 'z'; # d;\n e {} }")
        assert conf.block == (
            Directive("a", ("1",)),
            Directive("b", (), (Directive("c", ("x; y", "z")), Directive("e", (), ()))),
        )


def test_the_backup_command_copies_every_host_key_a_server_makes(tmp_path: Path) -> None:
    """deploy/README.md's backup copies the SFTP host keys by a glob: it must name the files a
    server generates (it said `ssh_host_*`, which matched none: a restore lost the keys, and
    every partner's client then refuses the new ones)."""
    import fnmatch

    from gateway.intake.sftp import load_host_keys

    settings = Settings(data_dir=tmp_path)
    load_host_keys(settings.host_key_path)
    made = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert len(made) == 3, made
    text = (DEPLOY / "README.md").read_text()
    (glob,) = re.findall(r"cp -p /var/lib/edi834/(\S*key\S*) /backup/", text)
    assert sorted(fnmatch.filter(made, glob)) == made, (glob, made)
