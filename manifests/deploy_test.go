package manifests

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/tunnel-dev/tunnel/internal/yamlcheck"
)

// placeholderFiles lists the manifests (relative to the repository's
// root) that mark something to edit with REPLACE.
func placeholderFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) || strings.HasPrefix(p, "monitoring/") {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), yamlcheck.Placeholder) {
			out = append(out, "manifests/"+filepath.ToSlash(p))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// docs/deploy.md's table of values to edit names exactly the files that
// mark something with REPLACE.
func TestDeployDocListsEveryPlaceholder(t *testing.T) {
	b, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "## 2. Fill in your values")
	end := strings.Index(doc, "## 3.")
	if start < 0 || end < start {
		t.Fatal("docs/deploy.md has no section 2 before section 3")
	}
	var listed []string
	for _, line := range strings.Split(doc[start:end], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`manifests/") {
			continue
		}
		for _, m := range regexp.MustCompile("`(manifests/[^`]+)`").FindAllStringSubmatch(cells[1], -1) {
			listed = append(listed, m[1])
		}
	}
	slices.Sort(listed)
	if want := placeholderFiles(t); !slices.Equal(listed, want) {
		t.Errorf("docs/deploy.md's table lists\n  %v\nbut the files marked REPLACE are\n  %v", listed, want)
	}
}

// Each overlay's commented images: block, uncommented as step 0 says,
// points every container of ours at the pushed image.
func TestImagesBlockUncommented(t *testing.T) {
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/m", p), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Uncomment every block, as step 0 says; an overlay built on another
	// (alt/eks-postgres on eks) takes its base's.
	blocks := 0
	for _, o := range overlays {
		k := filepath.Join("/m", o.dir, "kustomization.yaml")
		b, err := mem.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		i := strings.Index(text, "# images:\n")
		if i < 0 {
			continue
		}
		blocks++
		var block []string
		for _, l := range strings.Split(text[i:], "\n") {
			if !strings.HasPrefix(l, "#") {
				break
			}
			block = append(block, strings.TrimPrefix(strings.TrimPrefix(l, "#"), " "))
		}
		if err := mem.WriteFile(k, []byte(text[:i]+strings.Join(block, "\n")+"\n")); err != nil {
			t.Fatal(err)
		}
	}
	if blocks < 4 {
		t.Fatalf("%d overlays have a commented images: block, want eks, aks and both alt directions", blocks)
	}
	for _, o := range overlays {
		t.Run(o.dir, func(t *testing.T) {
			rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, filepath.Join("/m", o.dir))
			if err != nil {
				t.Fatalf("kustomize build with the images block: %v", err)
			}
			n := 0
			for _, r := range rm.Resources() {
				if r.GetKind() != "Deployment" {
					continue
				}
				j, err := r.MarshalJSON()
				if err != nil {
					t.Fatal(err)
				}
				obj, err := decodeStrict(j)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range obj.(*appsv1.Deployment).Spec.Template.Spec.Containers {
					if strings.HasPrefix(c.Image, "tunnel:") {
						t.Errorf("%s: container %s still runs %s", r.GetName(), c.Name, c.Image)
					}
					if c.Image == "registry.example.com/tunnel:v1.0.0" {
						n++
					}
				}
			}
			if n == 0 {
				t.Error("no container runs the pushed image")
			}
		})
	}
}
