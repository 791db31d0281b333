//go:build e2e

package e2e

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The cluster-mode checks of deploy/: deploy/cluster (compose, HAProxy,
// Prometheus, the run-cluster script) and deploy/kubernetes/cluster, each
// against the single-node files and against the options stompbox really
// has. Nothing here starts Docker or Kubernetes.

// composeDefault resolves compose's ${VAR:-default} to its default.
var composeDefault = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}`)

// checkEnvOptions runs the stompbox binary with the production
// configuration file and env (and nothing else in its environment): every
// variable must name an option (-print-config says it set it) and every
// value must pass validation, as it would in the container.
func checkEnvOptions(t *testing.T, env map[string]string) {
	t.Helper()
	if len(env) == 0 {
		t.Fatal("no STOMPBOX_ variables to check")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, stompboxBinary(t), "-config", filepath.Join(mustRoot(t), "deploy", "config", "stompbox.yaml"), "-print-config")
	cmd.Env = []string{}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+composeDefault.ReplaceAllString(v, "$1"))
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("stompbox -print-config with %v: %v\n%s", cmd.Env, err, out)
	}
	for k := range env {
		if !strings.Contains(string(out), "# env "+k+"\n") {
			t.Errorf("%s names no stompbox option (-print-config does not show it set)", k)
		}
	}
}

// haproxySections parses haproxy.cfg: "kind name" -> its lines, trimmed.
func haproxySections(t *testing.T, rel string) map[string][]string {
	t.Helper()
	sections := map[string][]string{}
	current := ""
	for _, l := range strings.Split(string(deployFile(t, rel)), "\n") {
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		if strings.TrimSpace(l) == "" {
			continue
		}
		if l[0] != ' ' && l[0] != '\t' {
			current = strings.Join(strings.Fields(l), " ")
			sections[current] = nil
			continue
		}
		sections[current] = append(sections[current], strings.Join(strings.Fields(l), " "))
	}
	return sections
}

func TestDeployClusterCompose(t *testing.T) {
	const rel = "deploy/cluster/compose.yaml"
	compose := yamlDocs(t, rel)[0]
	services, _ := dig(compose, "services").(map[string]any)
	var natsNames, stompboxNames []string
	for name, s := range services {
		switch {
		case strings.HasPrefix(str(dig(s, "image")), "nats:"):
			natsNames = append(natsNames, name)
		case dig(s, "build") != nil:
			stompboxNames = append(stompboxNames, name)
		}
	}
	slices.Sort(natsNames)
	slices.Sort(stompboxNames)
	if len(natsNames) != 3 || len(stompboxNames) != 3 || services["lb"] == nil {
		t.Fatalf("services: NATS %v, stompbox %v, lb %v; want 3 NATS, 3 stompbox and an lb", natsNames, stompboxNames, services["lb"] != nil)
	}
	cfg := prodConfig(t)
	adminPort := port(str(dig(cfg, "listen", "admin")))
	// volumes maps a service's container paths to host paths relative to
	// the module root or to "volume:<name>" for declared named volumes.
	volumes := func(t *testing.T, s any) map[string]string {
		out := map[string]string{}
		list, _ := dig(s, "volumes").([]any)
		for _, v := range list {
			f := strings.Split(str(v), ":")
			if src := f[0]; strings.HasPrefix(src, ".") {
				rel := filepath.Join("deploy", "cluster", src)
				if _, err := os.Stat(filepath.Join(mustRoot(t), rel)); err != nil {
					t.Errorf("bind mount %s: %v", v, err)
				}
				out[f[1]] = rel
			} else {
				if _, ok := dig(compose, "volumes").(map[string]any)[src]; !ok {
					t.Errorf("volume %s is not declared under volumes:", src)
				}
				out[f[1]] = "volume:" + src
			}
		}
		return out
	}

	t.Run("NATS", func(t *testing.T) {
		var routes []string
		for _, n := range natsNames {
			routes = append(routes, "nats-route://"+n+":6222")
		}
		seenNames, seenVolumes := map[string]bool{}, map[string]bool{}
		for _, n := range natsNames {
			var args []string
			for _, a := range dig(services[n], "command").([]any) {
				args = append(args, str(a))
			}
			flag := func(name string) string {
				if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
					return args[i+1]
				}
				return ""
			}
			if !slices.Contains(args, "--jetstream") || flag("--cluster_name") != "stompbox-nats" || flag("--cluster") != "nats://0.0.0.0:6222" {
				t.Errorf("%s: %v: want --jetstream, --cluster_name stompbox-nats, --cluster nats://0.0.0.0:6222", n, args)
			}
			got := strings.Split(flag("--routes"), ",")
			slices.Sort(got)
			if !slices.Equal(got, routes) {
				t.Errorf("%s: --routes %v, want every NATS service %v", n, got, routes)
			}
			name, store := flag("--name"), volumes(t, services[n])[flag("--store_dir")]
			if name == "" || seenNames[name] || !strings.HasPrefix(store, "volume:") || seenVolumes[store] {
				t.Errorf("%s: --name %q, store %q: each server needs a name and a volume of its own", n, name, store)
			}
			seenNames[name], seenVolumes[store] = true, true
		}
	})

	t.Run("Stompbox", func(t *testing.T) {
		var wantURLs []string
		for _, n := range natsNames {
			wantURLs = append(wantURLs, "nats://"+n+":4222")
		}
		nodes, journals := map[string]bool{}, map[string]bool{}
		for _, n := range stompboxNames {
			s := services[n]
			if df := filepath.Join("deploy", "cluster", str(dig(s, "build", "context")), str(dig(s, "build", "dockerfile"))); filepath.Clean(df) != "deploy/Dockerfile" {
				t.Errorf("%s: build resolves to %s, want deploy/Dockerfile", n, df)
			}
			env := map[string]string{}
			for k, v := range dig(s, "environment").(map[string]any) {
				env[k] = str(v)
			}
			urls := strings.Split(env["STOMPBOX_CLUSTER_NATS"], ",")
			slices.Sort(urls)
			if !slices.Equal(urls, wantURLs) {
				t.Errorf("%s: STOMPBOX_CLUSTER_NATS %q, want all of %v", n, env["STOMPBOX_CLUSTER_NATS"], wantURLs)
			}
			if node := env["STOMPBOX_CLUSTER_NODE"]; node == "" || nodes[node] {
				t.Errorf("%s: STOMPBOX_CLUSTER_NODE %q: each node needs a name of its own", n, node)
			} else {
				nodes[node] = true
			}
			if a := env["STOMPBOX_AUTH_ANONYMOUS"]; a != "" && a != "${STOMPBOX_DEMO_ANONYMOUS:-false}" {
				t.Errorf("%s: STOMPBOX_AUTH_ANONYMOUS %q: anonymous access must default to off", n, a)
			}
			m := volumes(t, s)
			if m["/etc/stompbox/stompbox.yaml"] != "deploy/config/stompbox.yaml" || m[str(dig(cfg, "auth", "acl_file"))] != "deploy/config/acl.yaml" {
				t.Errorf("%s: mounts %v: want deploy/config/stompbox.yaml and acl.yaml", n, m)
			}
			if j := m["/var/lib/stompbox"]; !strings.HasPrefix(j, "volume:") || journals[j] {
				t.Errorf("%s: /var/lib/stompbox on %q: each node needs a volume of its own", n, j)
			} else {
				journals[j] = true
			}
			if str(dig(s, "secrets", "0", "target")) != str(dig(cfg, "auth", "users_file")) ||
				!strings.HasPrefix(str(dig(compose, "secrets", str(dig(s, "secrets", "0", "source")), "file")), "${STOMPBOX_USERS_FILE:?") {
				t.Errorf("%s: secrets %v: want the users file at auth.users_file from ${STOMPBOX_USERS_FILE:?...}", n, dig(s, "secrets"))
			}
			if d, err := time.ParseDuration(str(dig(s, "stop_grace_period"))); err != nil || d <= shutdownTimeout(t) {
				t.Errorf("%s: stop_grace_period %v is not above shutdown_timeout", n, dig(s, "stop_grace_period"))
			}
			checkEnvOptions(t, env)
		}
	})

	t.Run("LoadBalancer", func(t *testing.T) {
		lb := services["lb"]
		m := volumes(t, lb)
		if m["/usr/local/etc/haproxy/haproxy.cfg"] != "deploy/cluster/haproxy.cfg" {
			t.Fatalf("lb mounts %v: want deploy/cluster/haproxy.cfg at /usr/local/etc/haproxy/haproxy.cfg", m)
		}
		var published []string
		for _, p := range dig(lb, "ports").([]any) {
			published = append(published, port(str(p)))
		}
		cfgSections := haproxySections(t, "deploy/cluster/haproxy.cfg")
		// Each frontend binds a port the lb publishes and leads to a
		// backend with one server per stompbox node on that port.
		for _, fp := range []struct{ frontend, port, serverOpt string }{
			{"frontend stomp", "61613", "send-proxy-v2"}, {"frontend http", "61614", ""},
		} {
			lines := cfgSections[fp.frontend]
			if !slices.Contains(lines, "bind :"+fp.port) || !slices.Contains(published, fp.port) {
				t.Errorf("%s: %v: want bind :%s, published by the lb (%v)", fp.frontend, lines, fp.port, published)
			}
			var backend string
			for _, l := range lines {
				if b, ok := strings.CutPrefix(l, "default_backend "); ok {
					backend = b
				}
			}
			var servers []string
			for _, l := range cfgSections["backend "+backend] {
				if f := strings.Fields(l); f[0] == "server" {
					servers = append(servers, f[2])
					if fp.serverOpt != "" && !slices.Contains(f, fp.serverOpt) {
						t.Errorf("backend %s: %q lacks %s", backend, l, fp.serverOpt)
					}
				}
			}
			var want []string
			for _, n := range stompboxNames {
				want = append(want, n+":"+fp.port)
			}
			if slices.Sort(servers); !slices.Equal(servers, want) {
				t.Errorf("backend %q servers %v, want %v", backend, servers, want)
			}
			if !slices.Contains(cfgSections["backend "+backend], "http-check send meth GET uri /readyz") {
				t.Errorf("backend %s does not check /readyz", backend)
			}
		}
		if !slices.Contains(cfgSections["frontend http"], "option forwardfor") {
			t.Error("frontend http does not add X-Forwarded-For")
		}
		defaults := strings.Join(cfgSections["defaults"], "\n")
		if !strings.Contains(defaults, "check port "+adminPort) {
			t.Errorf("defaults: health checks do not go to the admin port %s:\n%s", adminPort, defaults)
		}
		// The nodes trust the PROXY header and X-Forwarded-For from the lb's
		// fixed address alone, inside the network's subnet.
		lbAddr := str(dig(lb, "networks", "stompbox", "ipv4_address"))
		subnet, err := netip.ParsePrefix(str(dig(compose, "networks", "stompbox", "ipam", "config", "0", "subnet")))
		addr, err2 := netip.ParseAddr(lbAddr)
		if err != nil || err2 != nil || !subnet.Contains(addr) {
			t.Errorf("lb address %q in subnet %v: %v %v", lbAddr, subnet, err, err2)
		}
		for _, n := range stompboxNames {
			env := dig(services[n], "environment")
			if str(dig(env, "STOMPBOX_TRUSTED_PROXIES")) != lbAddr || str(dig(env, "STOMPBOX_PROXY_PROTOCOL")) != "true" {
				t.Errorf("%s: STOMPBOX_TRUSTED_PROXIES %v, STOMPBOX_PROXY_PROTOCOL %v; want %s and true (haproxy sends PROXY v2)",
					n, dig(env, "STOMPBOX_TRUSTED_PROXIES"), dig(env, "STOMPBOX_PROXY_PROTOCOL"), lbAddr)
			}
		}
		haproxy, err := exec.LookPath("haproxy")
		if err != nil {
			t.Log("haproxy not installed: its own check of haproxy.cfg skipped")
			return
		}
		out, err := exec.Command(haproxy, "-c", "-f", filepath.Join(mustRoot(t), "deploy", "cluster", "haproxy.cfg")).CombinedOutput()
		if err != nil {
			t.Errorf("haproxy -c: %v\n%s", err, out)
		}
	})

	t.Run("Prometheus", func(t *testing.T) {
		prom := services["prometheus"]
		m := volumes(t, prom)
		if m["/etc/prometheus/prometheus.yml"] != "deploy/cluster/prometheus.yml" || m["/etc/prometheus/alerts.yml"] != "deploy/prometheus/alerts.yml" {
			t.Errorf("prometheus mounts %v: want deploy/cluster/prometheus.yml and the shared alerts.yml beside it", m)
		}
		var targets []string
		for _, sc := range dig(yamlDocs(t, "deploy/cluster/prometheus.yml")[0], "scrape_configs").([]any) {
			for _, s := range dig(sc, "static_configs").([]any) {
				for _, tg := range dig(s, "targets").([]any) {
					targets = append(targets, str(tg))
				}
			}
		}
		for _, n := range stompboxNames {
			if !slices.Contains(targets, n+":"+adminPort) {
				t.Errorf("scrape targets %v lack %s:%s", targets, n, adminPort)
			}
		}
		// promtool resolves rule_files beside the configuration, as the
		// container mounts them.
		dir := t.TempDir()
		for src, dst := range map[string]string{"deploy/cluster/prometheus.yml": "prometheus.yml", "deploy/prometheus/alerts.yml": "alerts.yml"} {
			if err := os.WriteFile(filepath.Join(dir, dst), deployFile(t, src), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		promtool(t, "check", "config", filepath.Join(dir, "prometheus.yml"))
	})
}

func TestDeployKubernetesCluster(t *testing.T) {
	const dir = "deploy/kubernetes/cluster"
	byKind := map[string][]map[string]any{}
	var manifests []string
	files, _ := filepath.Glob(filepath.Join(mustRoot(t), dir, "*.yaml"))
	for _, f := range files {
		if b := filepath.Base(f); b == "kustomization.yaml" || b == "nats-values.yaml" {
			continue
		}
		manifests = append(manifests, filepath.Base(f))
		for _, d := range yamlDocs(t, filepath.Join(dir, filepath.Base(f))) {
			if dig(d, "metadata", "namespace") != nil {
				t.Errorf("%s: %s sets a namespace", f, dig(d, "metadata", "name"))
			}
			byKind[str(d["kind"])] = append(byKind[str(d["kind"])], d)
		}
	}
	base := map[string][]map[string]any{}
	for _, f := range []string{"statefulset.yaml", "service.yaml"} {
		for _, d := range yamlDocs(t, "deploy/kubernetes/"+f) {
			base[str(d["kind"])] = append(base[str(d["kind"])], d)
		}
	}
	if len(byKind["StatefulSet"]) != 1 || len(byKind["Service"]) != 2 || len(byKind["PodDisruptionBudget"]) != 1 {
		t.Fatalf("want 1 StatefulSet, 2 Services, 1 PodDisruptionBudget in %s (%v)", dir, manifests)
	}
	sts := byKind["StatefulSet"][0]
	ctr := dig(sts, "spec", "template", "spec", "containers", "0")

	t.Run("Kustomization", func(t *testing.T) {
		var res []string
		for _, r := range dig(yamlDocs(t, dir+"/kustomization.yaml")[0], "resources").([]any) {
			res = append(res, str(r))
		}
		slices.Sort(res)
		if slices.Sort(manifests); !slices.Equal(res, manifests) {
			t.Errorf("kustomization resources %v, want the manifests %v", res, manifests)
		}
		kubectl, err := exec.LookPath("kubectl")
		if err != nil {
			t.Log("kubectl not installed: rendering the kustomization skipped")
			return
		}
		out, err := exec.Command(kubectl, "kustomize", filepath.Join(mustRoot(t), dir)).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, out)
		}
		if n := strings.Count(string(out), "\nkind: StatefulSet\n"); n != 1 || !strings.Contains(string(out), "\n  replicas: 3\n") {
			t.Errorf("kubectl kustomize: %d StatefulSets, replicas 3 %v", n, strings.Contains(string(out), "\n  replicas: 3\n"))
		}
	})

	t.Run("StatefulSet", func(t *testing.T) {
		if dig(sts, "spec", "replicas") != 3 {
			t.Errorf("replicas %v, want 3", dig(sts, "spec", "replicas"))
		}
		env := map[string]any{}
		for _, e := range dig(ctr, "env").([]any) {
			env[str(dig(e, "name"))] = e
		}
		if v := str(dig(env["STOMPBOX_CLUSTER_NATS"], "value")); v != "nats://nats:4222" {
			t.Errorf("STOMPBOX_CLUSTER_NATS = %q, want nats://nats:4222 (the Helm release nats)", v)
		}
		if f := str(dig(env["STOMPBOX_CLUSTER_NODE"], "valueFrom", "fieldRef", "fieldPath")); f != "metadata.name" {
			t.Errorf("STOMPBOX_CLUSTER_NODE from %q, want the pod's metadata.name", f)
		}
		// Every variable is a stompbox option (the node name as the
		// downward API would give it).
		values := map[string]string{}
		for k, e := range env {
			values[k] = str(dig(e, "value"))
			if dig(e, "valueFrom") != nil {
				values[k] = str(dig(sts, "metadata", "name")) + "-0"
			}
		}
		checkEnvOptions(t, values)
	})

	t.Run("SameAsSingleNode", func(t *testing.T) {
		// Besides the replica count, the env and the spreading, the
		// StatefulSet is the single-node one: the probes, security and
		// mounts that TestDeployKubernetes checks, and the fields a
		// StatefulSet cannot change, so applying it over a single-node
		// install works.
		strip := func(d map[string]any) map[string]any {
			spec := dig(d, "spec").(map[string]any)
			delete(spec, "replicas")
			delete(dig(spec, "template", "spec").(map[string]any), "topologySpreadConstraints")
			delete(dig(spec, "template", "spec", "containers", "0").(map[string]any), "env")
			return d
		}
		got, want := strip(yamlDocs(t, dir+"/statefulset.yaml")[0]), strip(base["StatefulSet"][0])
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s/statefulset.yaml differs from deploy/kubernetes/statefulset.yaml beyond replicas, env and spreading:\n%v\n%v", dir, got, want)
		}
		if !reflect.DeepEqual(byKind["Service"], base["Service"]) {
			t.Errorf("%s/service.yaml differs from deploy/kubernetes/service.yaml", dir)
		}
	})

	t.Run("Spreading", func(t *testing.T) {
		podLabels := dig(sts, "spec", "template", "metadata", "labels")
		for what, sel := range map[string]any{
			"PodDisruptionBudget":       dig(byKind["PodDisruptionBudget"][0], "spec", "selector", "matchLabels"),
			"topologySpreadConstraints": dig(sts, "spec", "template", "spec", "topologySpreadConstraints", "0", "labelSelector", "matchLabels"),
		} {
			if !reflect.DeepEqual(sel, podLabels) {
				t.Errorf("%s selects %v, want the pods' labels %v", what, sel, podLabels)
			}
		}
		if dig(byKind["PodDisruptionBudget"][0], "spec", "maxUnavailable") != 1 {
			t.Error("PodDisruptionBudget: want maxUnavailable 1")
		}
	})

	t.Run("NATSHelmValues", func(t *testing.T) {
		v := yamlDocs(t, dir+"/nats-values.yaml")[0]
		for path, want := range map[string]any{
			"config.cluster.enabled": true, "config.cluster.replicas": 3, "config.jetstream.enabled": true,
			"config.jetstream.fileStore.enabled": true, "config.jetstream.fileStore.pvc.enabled": true,
		} {
			if got := dig(v, strings.Split(path, ".")...); got != want {
				t.Errorf("%s = %v, want %v", path, got, want)
			}
		}
		// The README installs release "nats", whose client Service is the
		// host of STOMPBOX_CLUSTER_NATS.
		readme := string(deployFile(t, dir+"/README.md"))
		if !strings.Contains(readme, "helm install nats nats/nats ") || !strings.Contains(readme, "-f "+dir+"/nats-values.yaml") {
			t.Error("README.md does not install the chart as release nats with nats-values.yaml")
		}
		for _, cmd := range []string{"-k " + dir, "-f deploy/kubernetes/configmap.yaml -f deploy/kubernetes/secret.yaml"} {
			if !strings.Contains(readme, cmd) {
				t.Errorf("README.md lacks %q", cmd)
			}
		}
	})
}

func TestDeployRunCluster(t *testing.T) {
	const script = "deploy/cluster/run-cluster.sh"
	root := mustRoot(t)
	if out, err := exec.Command("bash", "-n", filepath.Join(root, script)).CombinedOutput(); err != nil {
		t.Fatalf("bash -n %s: %v\n%s", script, err, out)
	}
	if fi, err := os.Stat(filepath.Join(root, script)); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("%s is not executable: %v", script, err)
	}
	cmd := exec.Command("make", "-n", "run-cluster")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	for _, want := range []string{"-o stompbox ./cmd/stompbox", "build -o bin/nats-server github.com/nats-io/nats-server/v2", script} {
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("make -n run-cluster: %v, lacks %q:\n%s", err, want, out)
		}
	}
	// The nodes' flags are real options: each -flag in the script's
	// stompbox command line is one `stompbox -h` lists.
	text := string(deployFile(t, script))
	help, _ := exec.Command(stompboxBinary(t), "-h").CombinedOutput()
	start := strings.Index(text, `"$STOMPBOX" -`)
	if start < 0 {
		t.Fatalf("%s: no stompbox command line", script)
	}
	cmdline := text[start:]
	cmdline = cmdline[:strings.Index(cmdline, `"$@"`)]
	flags := regexp.MustCompile(`(?:^|\s)(-[a-z][a-z-]+)`).FindAllStringSubmatch(cmdline, -1)
	if len(flags) < 5 {
		t.Fatalf("found only %v in %q", flags, cmdline)
	}
	for _, f := range flags {
		if !strings.Contains(string(help), "  "+f[1]+" ") && !strings.Contains(string(help), "  "+f[1]+"\n") {
			t.Errorf("%s passes %s, which stompbox -h does not list", script, f[1])
		}
	}
	if !strings.Contains(cmdline, "-cluster-nats") {
		t.Errorf("%s: the nodes are not started in cluster mode: %s", script, cmdline)
	}
}
