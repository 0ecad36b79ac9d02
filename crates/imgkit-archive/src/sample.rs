//! The images of the project's sample archive, `examples/images.tar`: tiny, fixed content so
//! the archive is byte-for-byte reproducible (a test rebuilds it and compares).

use imgkit_types::ImageRef;

use crate::write::{NewImage, layer_tar};

fn name(s: &str) -> ImageRef {
    s.parse().expect("sample names are valid")
}

/// The sample images: three named images sharing a base layer (one with two tags, one with a
/// registry and port in its name) and one untagged image.
pub fn images() -> Vec<NewImage> {
    let base = layer_tar(&[("etc/os-release", b"NAME=imgkit-sample\nID=imgkit\n")]);
    let hello = layer_tar(&[("hello.txt", b"hello from imgkit\n")]);
    let tools = layer_tar(&[("usr/share/tools/README", b"tools 2.1\n")]);
    let app = layer_tar(&[("srv/app/config.json", b"{\"port\":8080}\n")]);
    let scratch = layer_tar(&[("tmp/build.log", b"intermediate build step\n")]);
    vec![
        NewImage {
            names: vec![
                name("imgkit.example/hello:1.0"),
                name("imgkit.example/hello:latest"),
            ],
            created: "2026-11-20T09:12:01Z".into(),
            layers: vec![base.clone(), hello],
            run_config: serde_json::json!({"Cmd": ["/hello"], "Env": ["PATH=/usr/bin:/bin"]}),
        },
        NewImage {
            names: vec![name("imgkit.example/tools:2.1")],
            created: "2026-11-21T10:00:00Z".into(),
            layers: vec![base.clone(), tools],
            run_config: serde_json::json!({"Cmd": ["/usr/bin/tools"]}),
        },
        NewImage {
            names: vec![name("localhost:5000/team/app:1.0")],
            created: "2026-11-27T17:40:22Z".into(),
            layers: vec![base, app],
            run_config: serde_json::json!({"ExposedPorts": {"8080/tcp": {}}}),
        },
        NewImage {
            names: vec![],
            created: "2026-11-27T18:00:00Z".into(),
            layers: vec![scratch],
            run_config: serde_json::json!({}),
        },
    ]
}
