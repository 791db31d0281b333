//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Dockerfile, compose and systemd checks of deploy/: each file is parsed
// and checked against the others and against deploy/config/stompbox.yaml
// (Kubernetes: deploy_kubernetes_test.go).

func mustRoot(t *testing.T) string {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// dockerStages parses deploy/Dockerfile into stages of [instruction, args].
func dockerStages(t *testing.T) [][][2]string {
	t.Helper()
	var stages [][][2]string
	var line string
	for _, l := range strings.Split(string(deployFile(t, "deploy/Dockerfile")), "\n") {
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if line += strings.TrimSpace(l); strings.HasSuffix(line, "\\") {
			line = strings.TrimSuffix(line, "\\") + " "
			continue
		}
		ins, args, _ := strings.Cut(line, " ")
		line = ""
		if ins = strings.ToUpper(ins); ins == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %s before FROM", ins)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], [2]string{ins, strings.TrimSpace(args)})
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build and a runtime stage", len(stages))
	}
	return stages
}

func TestDeployDockerfile(t *testing.T) {
	stages := dockerStages(t)
	build, final := stages[0], stages[len(stages)-1]
	buildName := strings.Fields(build[0][1])[len(strings.Fields(build[0][1]))-1]
	all := func(stage [][2]string, ins string) (out []string) {
		for _, i := range stage {
			if i[0] == ins {
				out = append(out, i[1])
			}
		}
		return out
	}
	jsonArgs := func(ins string) []string {
		a := all(final, ins)
		var v []string
		if len(a) != 1 || json.Unmarshal([]byte(a[0]), &v) != nil || len(v) == 0 {
			t.Fatalf("final stage %s %v: want one JSON array", ins, a)
		}
		return v
	}
	t.Run("BuildStageRunsMakeBuild", func(t *testing.T) {
		runs := strings.Join(all(build, "RUN"), "\n")
		if !regexp.MustCompile(`(?m)\bmake build\b`).MatchString(runs) || strings.Contains(runs, "go build") {
			t.Errorf("build stage RUNs %q: want `make build` and no go build of its own", runs)
		}
		gomod := string(deployFile(t, "go.mod"))
		goVersion := regexp.MustCompile(`(?m)^go (\S+)`).FindStringSubmatch(gomod)[1]
		if !strings.HasPrefix(build[0][1], "golang:"+goVersion+"-") {
			t.Errorf("build stage FROM %s, want golang:%s (go.mod)", build[0][1], goVersion)
		}
	})
	t.Run("MakeBuildTarget", func(t *testing.T) {
		cmd := exec.Command("make", "-n", "build", "VERSION=v9.9.9-test")
		cmd.Dir = mustRoot(t)
		out, err := cmd.CombinedOutput()
		for _, want := range []string{"CGO_ENABLED=0 ", " -trimpath ", "-X main.version=v9.9.9-test", "-o stompbox ./cmd/stompbox"} {
			if err != nil || !strings.Contains(string(out), want) {
				t.Errorf("make -n build: %v, lacks %q:\n%s", err, want, out)
			}
		}
	})
	t.Run("FinalStageNonRoot", func(t *testing.T) {
		users := all(final, "USER")
		if len(users) == 0 {
			t.Errorf("final stage FROM %s sets no USER: it would run as root", final[0][1])
		}
		for _, u := range users {
			if name, _, _ := strings.Cut(u, ":"); name == "root" || name == "0" {
				t.Errorf("final stage USER %s", u)
			}
		}
	})
	t.Run("EntrypointIsTheBinaryWithTheConfig", func(t *testing.T) {
		entry, cmd := jsonArgs("ENTRYPOINT"), jsonArgs("CMD")
		copied := map[string]string{} // destination -> source
		for _, c := range all(final, "COPY") {
			f := strings.Fields(c)
			copied[f[len(f)-1]] = strings.Join(f[:len(f)-1], " ")
		}
		if src := copied[entry[0]]; !strings.Contains(src, "--from="+buildName) || !strings.HasSuffix(src, "/stompbox") {
			t.Errorf("ENTRYPOINT %v is not the binary copied from the %s stage (%q)", entry, buildName, src)
		}
		i := slices.Index(cmd, "-config")
		if i < 0 || i+1 >= len(cmd) || copied[cmd[i+1]] != "deploy/config/stompbox.yaml" {
			t.Errorf("CMD %v does not point -config at deploy/config/stompbox.yaml's copy", cmd)
		}
		// The rules are in the image; the users file never is (it is
		// mounted: no credentials are baked into an image).
		cfg := prodConfig(t)
		if acl := str(dig(cfg, "auth", "acl_file")); copied[acl] != "deploy/config/acl.yaml" {
			t.Errorf("auth.acl_file %s is not deploy/config/acl.yaml's copy (COPY %v)", acl, copied)
		}
		users := str(dig(cfg, "auth", "users_file"))
		for dst, src := range copied {
			if dst == users || strings.HasPrefix(dst, filepath.Dir(users)) {
				t.Errorf("COPY %s %s: the users file must be mounted, not built into the image", src, dst)
			}
		}
	})
	t.Run("PortsAndVolume", func(t *testing.T) {
		exposed := strings.Fields(strings.Join(all(final, "EXPOSE"), " "))
		for _, p := range []string{"61613", "61614", "61680", "61612", "61615"} {
			if !slices.Contains(exposed, p) {
				t.Errorf("EXPOSE %v lacks %s", exposed, p)
			}
		}
		vols := all(final, "VOLUME")
		if jd := str(dig(prodConfig(t), "journal", "dir")); len(vols) != 1 || !strings.HasPrefix(jd, vols[0]+"/") {
			t.Errorf("VOLUME %v does not hold journal.dir %s", vols, jd)
		}
	})
	t.Run("CopiedFilesExistAndAreNotIgnored", func(t *testing.T) {
		var ignore []string
		for _, l := range strings.Split(string(deployFile(t, ".dockerignore")), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				ignore = append(ignore, l)
			}
		}
		for _, stage := range stages {
			for _, c := range all(stage, "COPY") {
				f := strings.Fields(c)
				if strings.HasPrefix(f[0], "--from=") {
					continue
				}
				for _, src := range f[:len(f)-1] {
					if strings.HasPrefix(src, "--") || src == "." {
						continue
					}
					if _, err := os.Stat(filepath.Join(mustRoot(t), src)); err != nil {
						t.Errorf("COPY %s: %v", src, err)
					}
					for _, p := range ignore {
						if ok, _ := filepath.Match(p, src); ok || strings.HasPrefix(src, p+"/") {
							t.Errorf("COPY %s, but .dockerignore excludes it (%s)", src, p)
						}
					}
				}
			}
		}
	})
}

func TestDeployCompose(t *testing.T) {
	compose := yamlDocs(t, "deploy/compose.yaml")[0]
	svc := func(name string) map[string]any {
		s, _ := dig(compose, "services", name).(map[string]any)
		if s == nil {
			t.Fatalf("compose.yaml has no service %s", name)
		}
		return s
	}
	// mounts maps a service's container paths to host paths relative to
	// the module root (bind mounts) or to "volume:<name>".
	mounts := func(t *testing.T, s map[string]any) map[string]string {
		out := map[string]string{}
		for _, v := range s["volumes"].([]any) {
			f := strings.Split(str(v), ":")
			if src := f[0]; strings.HasPrefix(src, ".") {
				rel := filepath.Join("deploy", src)
				if _, err := os.Stat(filepath.Join(mustRoot(t), rel)); err != nil {
					t.Errorf("bind mount %s: %v", v, err)
				}
				out[f[1]] = rel
			} else {
				out[f[1]] = "volume:" + src
			}
		}
		return out
	}
	t.Run("Stompbox", func(t *testing.T) {
		s := svc("stompbox")
		df := filepath.Join("deploy", str(dig(s, "build", "context")), str(dig(s, "build", "dockerfile")))
		if filepath.Clean(df) != "deploy/Dockerfile" {
			t.Errorf("build %v resolves to %s, want deploy/Dockerfile", s["build"], df)
		}
		var ports []string
		for _, p := range s["ports"].([]any) {
			ports = append(ports, port(str(p)))
		}
		for _, p := range []string{"61613", "61614", "61680"} {
			if !slices.Contains(ports, p) {
				t.Errorf("ports %v do not publish %s", ports, p)
			}
		}
		m := mounts(t, s)
		if !strings.HasPrefix(m["/var/lib/stompbox"], "volume:") || m["/etc/stompbox/stompbox.yaml"] != "deploy/config/stompbox.yaml" {
			t.Errorf("mounts %v: want a volume at /var/lib/stompbox and the config file", m)
		}
		cfg := prodConfig(t)
		if acl := str(dig(cfg, "auth", "acl_file")); m[acl] != "deploy/config/acl.yaml" {
			t.Errorf("mounts %v: want deploy/config/acl.yaml at auth.acl_file %s", m, acl)
		}
		// The users file: a compose secret at auth.users_file, from a file
		// the operator names (never one in the repository).
		src := ""
		for _, sec := range s["secrets"].([]any) {
			if str(dig(sec, "target")) == str(dig(cfg, "auth", "users_file")) {
				src = str(dig(sec, "source"))
			}
		}
		if f := str(dig(compose, "secrets", src, "file")); src == "" || !strings.HasPrefix(f, "${STOMPBOX_USERS_FILE:?") {
			t.Errorf("secret %q from %q: want the users file at auth.users_file from ${STOMPBOX_USERS_FILE:?...}", src, f)
		}
		// Anonymous access is an opt-in demo, off unless asked for.
		if a := str(dig(s, "environment", "STOMPBOX_AUTH_ANONYMOUS")); a != "" && a != "false" && a != "${STOMPBOX_DEMO_ANONYMOUS:-false}" {
			t.Errorf("STOMPBOX_AUTH_ANONYMOUS %q: anonymous access must default to off", a)
		}
		if d, err := time.ParseDuration(str(s["stop_grace_period"])); err != nil || d <= shutdownTimeout(t) {
			t.Errorf("stop_grace_period %v is not above shutdown_timeout", s["stop_grace_period"])
		}
	})
	t.Run("Prometheus", func(t *testing.T) {
		s := svc("prometheus")
		m := mounts(t, s)
		conf := ""
		for _, a := range s["command"].([]any) {
			if v, ok := strings.CutPrefix(str(a), "--config.file="); ok {
				conf = v
			}
		}
		if m[conf] != "deploy/prometheus/prometheus.yml" || m[filepath.Join(filepath.Dir(conf), "alerts.yml")] != "deploy/prometheus/alerts.yml" {
			t.Errorf("--config.file=%s with mounts %v: want prometheus.yml there and alerts.yml beside it", conf, m)
		}
	})
	t.Run("Grafana", func(t *testing.T) {
		m := mounts(t, svc("grafana"))
		dash := str(dig(yamlDocs(t, "deploy/grafana/provisioning/dashboards/stompbox.yaml")[0], "providers", "0", "options", "path"))
		if m["/etc/grafana/provisioning"] != "deploy/grafana/provisioning" || m[dash] != "deploy/grafana/dashboards" {
			t.Errorf("mounts %v: want the provisioning dir and the dashboards at %q", m, dash)
		}
	})
}

// systemdUnit parses a unit file: section -> key -> values in order.
func systemdUnit(t *testing.T, rel string) map[string]map[string][]string {
	t.Helper()
	unit := map[string]map[string][]string{}
	section := ""
	for _, l := range strings.Split(string(deployFile(t, rel)), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[' && l[len(l)-1] == ']':
			section = l[1 : len(l)-1]
			unit[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", rel, l)
			}
			unit[section][strings.TrimSpace(k)] = append(unit[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return unit
}

func TestDeploySystemd(t *testing.T) {
	const rel = "deploy/systemd/stompbox.service"
	unit := systemdUnit(t, rel)
	svc := unit["Service"]
	one := func(k string) string {
		if len(svc[k]) != 1 {
			t.Errorf("[Service] %s: %v, want one value", k, svc[k])
			return ""
		}
		return svc[k][0]
	}
	t.Run("Service", func(t *testing.T) {
		if f := strings.Fields(one("ExecStart")); len(f) < 3 || f[0] != "/usr/local/bin/stompbox" || !slices.Contains(f, "-config") ||
			!slices.Contains(f, "/etc/stompbox/stompbox.yaml") {
			t.Errorf("ExecStart %v", f)
		}
		if r := one("ExecReload"); !strings.Contains(r, "kill -HUP $MAINPID") {
			t.Errorf("ExecReload %q does not send SIGHUP", r)
		}
		for k, want := range map[string]string{"Type": "simple", "KillSignal": "SIGTERM", "StateDirectory": "stompbox",
			"LimitNOFILE": "65536", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes"} {
			if got := one(k); got != want {
				t.Errorf("%s=%q, want %q", k, got, want)
			}
		}
		if u := one("User"); u == "" || u == "root" || u == "0" {
			t.Errorf("User=%q", u)
		}
		stop := one("TimeoutStopSec")
		if !strings.ContainsAny(stop, "hmsu") {
			stop += "s" // bare seconds
		}
		if d, err := time.ParseDuration(stop); err != nil || d <= shutdownTimeout(t) {
			t.Errorf("TimeoutStopSec=%s is not above shutdown_timeout", stop)
		}
		jd := str(dig(prodConfig(t), "journal", "dir"))
		if !slices.Contains(strings.Fields(strings.Join(svc["ReadWritePaths"], " ")), "/var/lib/stompbox") ||
			!strings.HasPrefix(jd, "/var/lib/stompbox/") {
			t.Errorf("ReadWritePaths %v, journal.dir %s: the journal must be under the writable /var/lib/stompbox", svc["ReadWritePaths"], jd)
		}
		if len(unit["Install"]["WantedBy"]) == 0 {
			t.Error("no [Install] WantedBy")
		}
		// The install notes put the rules and the users file where the
		// configuration expects them; the service itself cannot write them.
		cfg, text := prodConfig(t), string(deployFile(t, rel))
		for _, key := range []string{"acl_file", "users_file"} {
			if p := str(dig(cfg, "auth", key)); !strings.Contains(text, p) {
				t.Errorf("the unit's install notes do not mention auth.%s %s", key, p)
			}
		}
		if strings.Contains(strings.Join(svc["ReadWritePaths"], " "), "/etc") {
			t.Errorf("ReadWritePaths %v: the service must not write its users file or rules", svc["ReadWritePaths"])
		}
	})
	t.Run("SystemdAnalyzeVerify", func(t *testing.T) {
		analyze, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze not installed")
		}
		// The unit as installed, except ExecStart names a binary that exists.
		text := strings.Replace(string(deployFile(t, rel)), "\nExecStart=/usr/local/bin/stompbox ", "\nExecStart="+stompboxBinary(t)+" ", 1)
		path := filepath.Join(t.TempDir(), "stompbox.service")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})
}
