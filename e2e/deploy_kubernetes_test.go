//go:build e2e

package e2e

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The Kubernetes checks of deploy/: the manifests against each other and
// against deploy/config/stompbox.yaml and acl.yaml.

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
	if len(byKind["StatefulSet"]) != 1 || len(byKind["ConfigMap"]) != 1 || len(byKind["Secret"]) != 1 || len(byKind["Service"]) < 2 {
		t.Fatalf("want 1 StatefulSet, 1 ConfigMap, 1 Secret, 2 Services; got %v", slices.Collect(maps.Keys(byKind)))
	}
	sts, cm, secret := byKind["StatefulSet"][0], byKind["ConfigMap"][0], byKind["Secret"][0]
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
	t.Run("ConfigMapIsTheConfigFiles", func(t *testing.T) {
		for _, f := range []string{"stompbox.yaml", "acl.yaml"} {
			if got, want := str(dig(cm, "data", f)), string(deployFile(t, "deploy/config/"+f)); got != want {
				t.Errorf("configmap data.%s differs from deploy/config/%s", f, f)
			}
		}
	})
	t.Run("SecretHoldsNoCredentials", func(t *testing.T) {
		// The shipped users file is a placeholder to replace: comments
		// only, so no password hash is ever committed.
		users, ok := dig(secret, "stringData", "users").(string)
		if !ok {
			t.Fatalf("the Secret has no stringData.users")
		}
		for _, l := range strings.Split(users, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				t.Errorf("the shipped Secret holds a user line %q; it must be a placeholder", l)
			}
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
		// files: container path -> "ConfigMap/<key>" or "Secret/<key>".
		files := podFiles(t, dig(spec, "template", "spec", "volumes").([]any), mounts, map[string]map[string]any{
			"ConfigMap/" + str(dig(cm, "metadata", "name")): cm, "Secret/" + str(dig(secret, "metadata", "name")): secret})
		args := dig(ctr, "args").([]any)
		if i := slices.Index(args, any("-config")); i < 0 || i+1 >= len(args) || files[str(args[i+1])] != "ConfigMap/stompbox.yaml" {
			t.Errorf("args %v do not read stompbox.yaml from the ConfigMap (files %v)", args, files)
		}
		for key, want := range map[string]string{"acl_file": "ConfigMap/acl.yaml", "users_file": "Secret/users"} {
			if p := str(dig(cfg, "auth", key)); files[p] != want {
				t.Errorf("auth.%s %s is %q in the pod, want %s (files %v)", key, p, files[p], want, files)
			}
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

// podFiles maps the container paths that configMap, secret and projected
// volumes put files at to "Kind/key", for the objects given by
// "Kind/name".
func podFiles(t *testing.T, volumes []any, mounts map[string]string, objects map[string]map[string]any) map[string]string {
	t.Helper()
	files := map[string]string{}
	add := func(dir, kind string, src any) {
		obj := objects[kind+"/"+str(dig(src, "name"))]
		if obj == nil {
			t.Errorf("a volume uses %s %v, which is not among the manifests", kind, dig(src, "name"))
			return
		}
		if items, _ := dig(src, "items").([]any); len(items) > 0 {
			for _, it := range items {
				files[dir+"/"+str(dig(it, "path"))] = kind + "/" + str(dig(it, "key"))
			}
			return
		}
		for _, field := range []string{"data", "stringData"} {
			data, _ := dig(obj, field).(map[string]any)
			for k := range data {
				files[dir+"/"+k] = kind + "/" + k
			}
		}
	}
	for _, v := range volumes {
		dir := mounts[str(dig(v, "name"))]
		if dir == "" {
			continue
		}
		sources := []any{v}
		if p, ok := dig(v, "projected", "sources").([]any); ok {
			sources = p
		}
		for _, s := range sources {
			if c := dig(s, "configMap"); c != nil {
				add(dir, "ConfigMap", c)
			}
			if c := dig(s, "secret"); c != nil {
				name := dig(c, "name") // a projected source; a secret volume says secretName
				if name == nil {
					name = dig(c, "secretName")
				}
				add(dir, "Secret", map[string]any{"name": name, "items": dig(c, "items")})
			}
		}
	}
	return files
}
