//! Parameter storage on a backend, in the order of `Graph::param_specs`.
use crate::backend::Backend;
use crate::nn::graph::{Graph, ParamKind, ParamSpec};
use crate::{Error, Result};
use contextrast_model::rng::SplitMix64;
use std::collections::{BTreeMap, HashMap};

/// Parameters on the host, keyed by name: what checkpoints and the exporter hold.
pub type HostParams = BTreeMap<String, Vec<f32>>;

/// The model's parameters and batch-norm state, on backend `B`.
pub struct Params<B: Backend> {
    /// What each parameter is, in `Graph::param_specs` order.
    pub specs: Vec<ParamSpec>,
    /// Each parameter's buffer, aligned with `specs`.
    pub values: Vec<B::Buf>,
    index: HashMap<String, usize>,
}

impl<B: Backend> Params<B> {
    /// Kaiming-normal convolution weights (fan-in, ReLU gain; zero for the graph's
    /// `zero_init` convolutions), zero biases, BN γ = 1, β = 0, running mean 0, variance 1.
    /// Deterministic for `seed`.
    pub fn init(be: &B, graph: &Graph, seed: u64) -> Result<Self> {
        let mut host = HostParams::new();
        for (i, spec) in graph.param_specs().iter().enumerate() {
            let n = spec.numel();
            let v = match spec.kind {
                ParamKind::ConvWeight
                    if spec
                        .name
                        .strip_suffix(".weight")
                        .is_some_and(|p| graph.zero_init.iter().any(|z| z == p)) =>
                {
                    vec![0.0; n]
                }
                ParamKind::ConvWeight => {
                    let fan_in: usize = spec.dims[1..].iter().product();
                    let std = (2.0 / fan_in as f64).sqrt();
                    let mut rng = SplitMix64::seeded(seed ^ ((i as u64 + 1) << 32));
                    (0..n).map(|_| (rng.gaussian() * std) as f32).collect()
                }
                ParamKind::BnGamma | ParamKind::BnRunningVar => vec![1.0; n],
                ParamKind::ConvBias | ParamKind::BnBeta | ParamKind::BnRunningMean => vec![0.0; n],
            };
            host.insert(spec.name.clone(), v);
        }
        Self::from_host(be, graph, &host)
    }

    /// Uploads host parameters; every parameter of the graph must be present with its size
    /// (callers add the file name to the error).
    pub fn from_host(be: &B, graph: &Graph, host: &HostParams) -> Result<Self> {
        let specs = graph.param_specs();
        let mut values = Vec::with_capacity(specs.len());
        let mut index = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            let v = host
                .get(&spec.name)
                .ok_or_else(|| Error::Shape(format!("parameter {} is missing", spec.name)))?;
            if v.len() != spec.numel() {
                return Err(Error::Shape(format!(
                    "parameter {} has {} values, the model needs {:?} = {}",
                    spec.name,
                    v.len(),
                    spec.dims,
                    spec.numel()
                )));
            }
            values.push(be.upload(v)?);
            index.insert(spec.name.clone(), i);
        }
        Ok(Params {
            specs,
            values,
            index,
        })
    }

    /// Downloads every parameter.
    pub fn to_host(&self, be: &B) -> Result<HostParams> {
        let mut out = HostParams::new();
        for (spec, v) in self.specs.iter().zip(&self.values) {
            out.insert(spec.name.clone(), be.download(v)?);
        }
        Ok(out)
    }

    /// Position of the parameter `name` in `specs`/`values`; an error if there is none.
    pub fn index_of(&self, name: &str) -> Result<usize> {
        self.index
            .get(name)
            .copied()
            .ok_or_else(|| Error::Shape(format!("no parameter {name}")))
    }

    /// The buffer of the parameter `name`; an error if there is none.
    pub fn get(&self, name: &str) -> Result<&B::Buf> {
        Ok(&self.values[self.index_of(name)?])
    }

    /// Number of trainable scalars, optionally excluding training-only heads.
    pub fn count(&self, include_training_only: bool) -> usize {
        self.specs
            .iter()
            .filter(|s| s.trainable() && (include_training_only || !s.training_only))
            .map(|s| s.numel())
            .sum()
    }
}
