//! The flat `config.json` layout of earlier vqib versions (every key at the top level), read by
//! nesting each key into its section of the current layout.

/// Where each key of the flat layout lives in the sectioned one: (flat key, section, key).
const FLAT_KEYS: &[(&str, &str, &str)] = &[
    ("dataset", "data", "dataset"),
    ("data_dir", "data", "data_dir"),
    ("image_size", "data", "image_size"),
    ("shapes_train", "data", "shapes_train"),
    ("shapes_test", "data", "shapes_test"),
    ("train_limit", "data", "train_limit"),
    ("test_limit", "data", "test_limit"),
    ("image_shape", "data", "image_shape"),
    ("hidden", "model", "hidden"),
    ("sigma", "model", "sigma"),
    ("quantizer", "quantizer", "kind"),
    ("codebook_size", "quantizer", "codebook_size"),
    ("code_dim", "quantizer", "code_dim"),
    ("beta", "quantizer", "beta"),
    ("ema_decay", "quantizer", "ema_decay"),
    ("ema_epsilon", "quantizer", "ema_epsilon"),
    ("temperature", "quantizer", "temperature"),
    ("samples", "quantizer", "samples"),
    ("init", "quantizer", "init"),
    ("dead_code_steps", "quantizer", "dead_code_steps"),
    ("rate", "rate", "kind"),
    ("rate_weight", "rate", "weight"),
    ("prior", "rate", "prior"),
    ("epochs", "training", "epochs"),
    ("batch_size", "training", "batch_size"),
    ("lr", "training", "lr"),
    ("seed", "training", "seed"),
    ("device", "training", "device"),
    ("log_every", "training", "log_every"),
    ("checkpoint_every", "training", "checkpoint_every"),
    ("eval_every", "training", "eval_every"),
];

/// Whether a config is in the flat layout (its `quantizer` is a name, not a section).
pub(super) fn is_flat(v: &serde_json::Value) -> bool {
    v.get("quantizer").is_some_and(|q| q.is_string())
}

/// The flat layout moved into sections; keys it does not know are kept at the top level (and
/// then rejected or ignored by serde as for any config).
pub(super) fn nest(v: serde_json::Value) -> serde_json::Value {
    let serde_json::Value::Object(flat) = v else {
        return v;
    };
    let mut out = serde_json::Map::new();
    for (key, value) in flat {
        match FLAT_KEYS.iter().find(|(k, _, _)| *k == key) {
            Some((_, section, name)) => {
                let s = out
                    .entry(section.to_string())
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                if let serde_json::Value::Object(s) = s {
                    s.insert(name.to_string(), value);
                }
            }
            None => {
                out.insert(key, value);
            }
        }
    }
    serde_json::Value::Object(out)
}
