//! `docs/RESULTS.md` against the result directories it reports: every experiment's section
//! is there, every `docs/results/<run>/` is cited, and every figure it shows exists. (A partial
//! edit once deleted 340 lines of it, three sections, and nothing failed.)

use std::path::PathBuf;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

#[test]
fn results_md_has_every_section_cites_every_run_and_shows_existing_figures() {
    let text = std::fs::read_to_string(docs().join("RESULTS.md")).expect("docs/RESULTS.md");
    for (i, name) in ["limited-supervision", "dcea-denoise", "csc-robustness", "double-sparsity", "spatial-contrasting"]
        .iter()
        .enumerate()
    {
        let heading = format!("## {}. {name}", i + 1);
        assert!(text.contains(&heading), "RESULTS.md has no section '{heading}'");
        let at = text.find(&heading).unwrap();
        let end = text[at + 1..].find("\n## ").map_or(text.len(), |e| at + 1 + e);
        let section = &text[at..end];
        for part in ["**Command", "**Our table", "**Published numbers", "**Verdict"] {
            assert!(section.contains(part), "RESULTS.md section '{heading}' has no {part}");
        }
    }
    let mut runs: Vec<String> = std::fs::read_dir(docs().join("results"))
        .expect("docs/results")
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    runs.sort();
    assert!(runs.len() >= 5, "{runs:?}");
    for run in &runs {
        let cited = ["/", "`", ")"].iter().any(|end| text.contains(&format!("results/{run}{end}")));
        assert!(cited, "docs/results/{run}/ is not cited in RESULTS.md");
    }
    let mut shown = 0;
    for (i, _) in text.match_indices("](results/") {
        let link = &text[i + 2..];
        let target = &link[..link.find(')').expect("a closed link")];
        assert!(docs().join(target).exists(), "RESULTS.md links {target}, which does not exist");
        shown += 1;
    }
    assert!(shown >= 5, "RESULTS.md shows {shown} figures");
}
