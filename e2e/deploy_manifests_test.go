//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Kubernetes, Dockerfile, compose and systemd checks of deploy/: each file
// is parsed and checked against the others and against
// deploy/config/stompbox.yaml.

func TestDeployKubernetes(t *testing.T) {
	const dir = "deploy/kubernetes"
	byKind := map[string][]map[string]any{}
	files, _ := filepath.Glob(filepath.Join(mustRoot(t), dir, "*.yaml"))
	var manifests []string
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		manifests = append(manifests, filepath.Base(f))
		for _, d := range yamlDocs(t, filepath.Join(dir, filepath.Base(f))) {
			if str(d["apiVersion"]) == "" || str(d["kind"]) == "" || str(dig(d, "metadata", "name")) == "" {
				t.Errorf("%s: a document without apiVersion, kind or metadata.name", f)
			}
			if dig(d, "metadata", "namespace") != nil {
				t.Errorf("%s: %s sets a namespace", f, dig(d, "metadata", "name"))
			}
			byKind[str(d["kind"])] = append(byKind[str(d["kind"])], d)
		}
	}
	if len(byKind["StatefulSet"]) != 1 || len(byKind["ConfigMap"]) != 1 || len(byKind["Service"]) < 2 {
		t.Fatalf("want 1 StatefulSet, 1 ConfigMap, 2 Services; got %v", slices.Collect(maps.Keys(byKind)))
	}
	sts, cm := byKind["StatefulSet"][0], byKind["ConfigMap"][0]
	podLabels, _ := dig(sts, "spec", "template", "metadata", "labels").(map[string]any)
	matches := func(sel any) bool {
		m, _ := sel.(map[string]any)
		for k, v := range m {
			if podLabels[k] != v {
				return false
			}
		}
		return len(m) > 0
	}
	ctr := dig(sts, "spec", "template", "spec", "containers", "0")
	ctrPorts := map[string]int{}
	for _, p := range dig(ctr, "ports").([]any) {
		ctrPorts[str(dig(p, "name"))] = dig(p, "containerPort").(int)
	}
	cfg := prodConfig(t)

	t.Run("Kustomization", func(t *testing.T) {
		var res []string
		for _, r := range dig(yamlDocs(t, dir+"/kustomization.yaml")[0], "resources").([]any) {
			res = append(res, str(r))
		}
		slices.Sort(res)
		if slices.Sort(manifests); !slices.Equal(res, manifests) {
			t.Errorf("kustomization resources %v, want the manifests %v", res, manifests)
		}
	})
	t.Run("ConfigMapIsTheConfigFile", func(t *testing.T) {
		if got, want := str(dig(cm, "data", "stompbox.yaml")), string(deployFile(t, "deploy/config/stompbox.yaml")); got != want {
			t.Errorf("configmap data.stompbox.yaml differs from deploy/config/stompbox.yaml")
		}
	})
	t.Run("StatefulSet", func(t *testing.T) {
		spec := dig(sts, "spec")
		if str(dig(spec, "serviceName")) == "" || dig(spec, "replicas") != 1 {
			t.Errorf("serviceName %q, replicas %v", dig(spec, "serviceName"), dig(spec, "replicas"))
		}
		if !matches(dig(spec, "selector", "matchLabels")) {
			t.Error("selector does not match the template labels")
		}
		if str(dig(ctr, "image")) == "" {
			t.Error("no container image")
		}
		for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
			p := dig(ctr, probe, "httpGet")
			if str(dig(p, "path")) != path || ctrPorts[str(dig(p, "port"))] != 61680 {
				t.Errorf("%s: %v, want %s on the admin port 61680", probe, p, path)
			}
		}
		if ctrPorts["admin"] != 61680 || port(str(dig(cfg, "listen", "admin"))) != "61680" {
			t.Errorf("admin port %d, listen.admin %v", ctrPorts["admin"], dig(cfg, "listen", "admin"))
		}
		for _, k := range []string{"requests", "limits"} {
			if m, _ := dig(ctr, "resources", k).(map[string]any); len(m) == 0 {
				t.Errorf("no resources.%s", k)
			}
		}
		if dig(spec, "template", "spec", "securityContext", "runAsNonRoot") != true && dig(ctr, "securityContext", "runAsNonRoot") != true {
			t.Error("runAsNonRoot is not set")
		}
		if dig(ctr, "securityContext", "readOnlyRootFilesystem") != true {
			t.Error("readOnlyRootFilesystem is not set")
		}
		if g, _ := dig(spec, "template", "spec", "terminationGracePeriodSeconds").(int); time.Duration(g)*time.Second <= shutdownTimeout(t) {
			t.Errorf("terminationGracePeriodSeconds %d is not above shutdown_timeout", g)
		}
		claim := str(dig(spec, "volumeClaimTemplates", "0", "metadata", "name"))
		mounts := map[string]string{}
		for _, m := range dig(ctr, "volumeMounts").([]any) {
			mounts[str(dig(m, "name"))] = str(dig(m, "mountPath"))
		}
		if jd := str(dig(cfg, "journal", "dir")); claim == "" || mounts[claim] == "" || !strings.HasPrefix(jd, mounts[claim]+"/") {
			t.Errorf("journal.dir %s is not on the volumeClaimTemplate %q (mounts %v)", jd, claim, mounts)
		}
		cmVol := ""
		for _, v := range dig(spec, "template", "spec", "volumes").([]any) {
			if str(dig(v, "configMap", "name")) == str(dig(cm, "metadata", "name")) {
				cmVol = str(dig(v, "name"))
			}
		}
		args := fmt.Sprint(dig(ctr, "args"))
		if cmVol == "" || !strings.Contains(args, mounts[cmVol]+"/stompbox.yaml") {
			t.Errorf("args %s do not read stompbox.yaml from the ConfigMap volume (mounted at %q)", args, mounts[cmVol])
		}
	})
	t.Run("Services", func(t *testing.T) {
		ports := map[int]map[string]any{}
		for _, svc := range byKind["Service"] {
			if !matches(dig(svc, "spec", "selector")) {
				t.Errorf("service %v selects no broker pod", dig(svc, "metadata", "name"))
			}
			ps, _ := dig(svc, "spec", "ports").([]any)
			if len(ps) == 0 {
				t.Errorf("service %v has no ports", dig(svc, "metadata", "name"))
			}
			for _, p := range ps {
				if _, ok := ctrPorts[str(dig(p, "targetPort"))]; !ok {
					t.Errorf("service %v: targetPort %v is no container port", dig(svc, "metadata", "name"), dig(p, "targetPort"))
				}
				n, _ := dig(p, "port").(int)
				ports[n] = svc
			}
		}
		if ports[61613] == nil || ports[61614] == nil || ports[61613]["metadata"] == nil {
			t.Fatalf("no service for STOMP 61613 and HTTP 61614")
		}
		admin := ports[61680]
		if admin == nil || str(dig(admin, "metadata", "annotations", "prometheus.io/scrape")) != "true" ||
			str(dig(admin, "metadata", "annotations", "prometheus.io/port")) != "61680" {
			t.Errorf("no admin service on 61680 with prometheus.io scrape annotations")
		}
		if str(dig(admin, "metadata", "name")) == str(dig(ports[61613], "metadata", "name")) {
			t.Error("the admin port shares the client service")
		}
		if str(dig(admin, "spec", "clusterIP")) != "None" || str(dig(admin, "metadata", "name")) != str(dig(sts, "spec", "serviceName")) {
			t.Error("the admin service is not the StatefulSet's headless serviceName")
		}
	})
}

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
