//! The ONNX implementation of the U-Net's ops trait: each call appends nodes to a graph
//! and each parameter becomes an initializer, so walking the forward pass once records
//! the whole network.

use std::collections::HashMap;

use ddpm_models::ops::{timestep_frequencies, Backend};
use ddpm_models::{Error, Result, Weights};

use super::proto::{tensor_proto::DataType, NodeProto, TensorProto};
use super::{attr_float, attr_int, attr_ints, attr_string, float_tensor, int64_tensor};

/// Records nodes and initializers. Tensors are value names.
pub struct Recorder<'w> {
    weights: &'w Weights,
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<TensorProto>,
    consts: HashMap<String, String>,
    counter: usize,
    /// Weights and activations in float16.
    pub(crate) fp16: bool,
    /// Weights stored as float16 and cast to float32 once, at session start: half the file,
    /// float32 arithmetic.
    pub(crate) weights_fp16: bool,
}

impl<'w> Recorder<'w> {
    pub fn new(weights: &'w Weights, fp16: bool) -> Self {
        Self { weights, nodes: Vec::new(), initializers: Vec::new(), consts: HashMap::new(), counter: 0, fp16, weights_fp16: false }
    }

    /// Adds a weight initializer named `name` (float16 storage plus a Cast when
    /// `weights_fp16`).
    fn add_weight(&mut self, name: &str, dims: &[usize], data: &[f32]) {
        if self.weights_fp16 && !self.fp16 {
            let stored = format!("{name}.fp16");
            self.initializers.push(float_tensor(&stored, dims, data, true));
            self.nodes.push(NodeProto {
                op_type: Some("Cast".into()),
                name: Some(format!("{name}.cast")),
                input: vec![stored],
                output: vec![name.to_string()],
                attribute: vec![attr_int("to", DataType::Float as i64)],
                ..Default::default()
            });
        } else {
            self.initializers.push(float_tensor(name, dims, data, self.fp16));
        }
    }

    fn has_weight(&self, name: &str) -> bool {
        self.initializers.iter().any(|t| t.name.as_deref() == Some(name))
            || self.nodes.iter().any(|n| n.output.first().map(String::as_str) == Some(name))
    }

    fn fresh(&mut self, op: &str) -> String {
        self.counter += 1;
        format!("{}_{}", op.to_lowercase(), self.counter)
    }

    /// Appends a node with one output and returns the output's name.
    pub(crate) fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<super::proto::AttributeProto>) -> String {
        let out = self.fresh(op);
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(format!("{out}_node")),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    /// A float constant (in the graph's float type), shared by value.
    fn float_const(&mut self, dims: &[usize], data: &[f32]) -> String {
        let key = format!("f{dims:?}{:?}", data.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        if let Some(n) = self.consts.get(&key) {
            return n.clone();
        }
        let name = self.fresh("const");
        self.initializers.push(float_tensor(&name, dims, data, self.fp16));
        self.consts.insert(key, name.clone());
        name
    }

    /// A float32 constant regardless of the graph's float type.
    fn f32_const(&mut self, dims: &[usize], data: &[f32]) -> String {
        let name = self.fresh("const");
        self.initializers.push(float_tensor(&name, dims, data, false));
        name
    }

    /// An int64 constant of shape [len] (shared by value).
    pub(crate) fn int_const_pub(&mut self, data: &[i64]) -> String {
        self.int_const(data)
    }

    fn int_const(&mut self, data: &[i64]) -> String {
        let key = format!("i{data:?}");
        if let Some(n) = self.consts.get(&key) {
            return n.clone();
        }
        let name = self.fresh("const");
        self.initializers.push(int64_tensor(&name, &[data.len()], data));
        self.consts.insert(key, name.clone());
        name
    }

    fn weight(&self, name: &str) -> Result<&ddpm_models::Weight> {
        self.weights.get(name).ok_or_else(|| Error::Weight {
            file: "checkpoint".into(),
            name: name.into(),
            msg: "missing".into(),
        })
    }

    /// Adds a parameter as an initializer in its own layout (once).
    fn use_param(&mut self, name: &str) -> Result<()> {
        if !self.has_weight(name) {
            let w = self.weight(name)?;
            let (shape, data) = (w.shape.clone(), w.data.clone());
            self.add_weight(name, &shape, &data);
        }
        Ok(())
    }

    /// Casts a float32 value to the graph's float type (a no-op in float32 graphs).
    pub(crate) fn to_graph_float(&mut self, x: &str) -> String {
        if self.fp16 {
            self.node("Cast", &[x], vec![attr_int("to", DataType::Float16 as i64)])
        } else {
            x.to_string()
        }
    }

    /// Casts a graph-float value back to float32.
    pub(crate) fn to_f32(&mut self, x: &str) -> String {
        if self.fp16 {
            self.node("Cast", &[x], vec![attr_int("to", DataType::Float as i64)])
        } else {
            x.to_string()
        }
    }
}

impl Backend for Recorder<'_> {
    type Tensor = String;

    fn param(&mut self, name: &str, shape: &[usize]) -> Result<String> {
        let w = self.weight(name)?;
        if w.shape != shape {
            return Err(Error::Weight { file: "checkpoint".into(), name: name.into(), msg: format!("shape {:?}, expected {shape:?}", w.shape) });
        }
        // The initializer is added where the parameter is used, in the layout that use
        // wants (a linear layer's weight transposed, a norm's as [C, 1, 1]).
        Ok(name.to_string())
    }

    fn conv2d(&mut self, x: &String, w: &String, b: &String, stride: usize, padding: usize) -> Result<String> {
        let k = self.weight(w)?.shape[2] as i64;
        self.use_param(w)?;
        self.use_param(b)?;
        let (s, p) = (stride as i64, padding as i64);
        Ok(self.node(
            "Conv",
            &[x, w, b],
            vec![attr_ints("kernel_shape", &[k, k]), attr_ints("strides", &[s, s]), attr_ints("pads", &[p, p, p, p])],
        ))
    }

    fn pad_bottom_right(&mut self, x: &String) -> Result<String> {
        let pads = self.int_const(&[0, 0, 0, 0, 0, 0, 1, 1]);
        Ok(self.node("Pad", &[x, &pads], vec![attr_string("mode", "constant")]))
    }

    fn group_norm(&mut self, x: &String, groups: usize, eps: f64, w: &String, b: &String) -> Result<String> {
        // [B, C, H, W] -> [B, G, C/G*H*W] -> InstanceNormalization (per group) -> back,
        // then the per-channel affine: the pattern ORT's CPU kernels run fastest.
        let c = self.weight(w)?.shape[0];
        let grouped_shape = self.int_const(&[0, groups as i64, -1]);
        let grouped = self.node("Reshape", &[x, &grouped_shape], vec![]);
        let ones = self.float_const(&[groups], &vec![1.0; groups]);
        let zeros = self.float_const(&[groups], &vec![0.0; groups]);
        let normed = self.node("InstanceNormalization", &[&grouped, &ones, &zeros], vec![attr_float("epsilon", eps as f32)]);
        let shape = self.node("Shape", &[x], vec![]);
        let back = self.node("Reshape", &[&normed, &shape], vec![]);
        // Per-channel scale and shift as [C, 1, 1] initializers.
        let (wd, bd) = (self.weight(w)?.data.clone(), self.weight(b)?.data.clone());
        let w3 = format!("{w}.chw");
        let b3 = format!("{b}.chw");
        if !self.has_weight(&w3) {
            self.add_weight(&w3, &[c, 1, 1], &wd);
            self.add_weight(&b3, &[c, 1, 1], &bd);
        }
        let scaled = self.node("Mul", &[&back, &w3], vec![]);
        Ok(self.node("Add", &[&scaled, &b3], vec![]))
    }

    fn linear(&mut self, x: &String, w: &String, b: &String) -> Result<String> {
        // x W^T with W^T stored once as an [in, out] initializer.
        let wt = format!("{w}.T");
        if !self.has_weight(&wt) {
            let weight = self.weight(w)?;
            let (out_f, in_f) = (weight.shape[0], weight.shape[1]);
            let mut t = vec![0.0f32; in_f * out_f];
            for o in 0..out_f {
                for i in 0..in_f {
                    t[i * out_f + o] = weight.data[o * in_f + i];
                }
            }
            self.add_weight(&wt, &[in_f, out_f], &t);
        }
        self.use_param(b)?;
        let y = self.node("MatMul", &[x, &wt], vec![]);
        Ok(self.node("Add", &[&y, b], vec![]))
    }

    fn silu(&mut self, x: &String) -> Result<String> {
        let s = self.node("Sigmoid", &[x], vec![]);
        Ok(self.node("Mul", &[x, &s], vec![]))
    }

    fn dropout(&mut self, x: &String, _p: f64) -> Result<String> {
        Ok(x.clone()) // inference graph
    }

    fn add(&mut self, a: &String, b: &String) -> Result<String> {
        Ok(self.node("Add", &[a, b], vec![]))
    }

    fn add_per_channel(&mut self, x: &String, v: &String) -> Result<String> {
        let axes = self.int_const(&[2, 3]);
        let v4 = self.node("Unsqueeze", &[v, &axes], vec![]);
        Ok(self.node("Add", &[x, &v4], vec![]))
    }

    fn affine(&mut self, x: &String, mul: f64, add: f64) -> Result<String> {
        let mut y = x.clone();
        if mul != 1.0 {
            let m = self.float_const(&[], &[mul as f32]);
            y = self.node("Mul", &[&y, &m], vec![]);
        }
        if add != 0.0 {
            let a = self.float_const(&[], &[add as f32]);
            y = self.node("Add", &[&y, &a], vec![]);
        }
        Ok(y)
    }

    fn concat_channels(&mut self, a: &String, b: &String) -> Result<String> {
        Ok(self.node("Concat", &[a, b], vec![attr_int("axis", 1)]))
    }

    fn upsample_nearest2x(&mut self, x: &String) -> Result<String> {
        let scales = self.f32_const(&[4], &[1.0, 1.0, 2.0, 2.0]);
        Ok(self.node(
            "Resize",
            &[x, "", &scales],
            vec![
                attr_string("mode", "nearest"),
                attr_string("coordinate_transformation_mode", "asymmetric"),
                attr_string("nearest_mode", "floor"),
            ],
        ))
    }

    fn to_tokens(&mut self, x: &String) -> Result<String> {
        let shape = self.int_const(&[0, 0, -1]);
        let flat = self.node("Reshape", &[x, &shape], vec![]);
        Ok(self.node("Transpose", &[&flat], vec![attr_ints("perm", &[0, 2, 1])]))
    }

    fn from_tokens(&mut self, x: &String, like: &String) -> Result<String> {
        let t = self.node("Transpose", &[x], vec![attr_ints("perm", &[0, 2, 1])]);
        let shape = self.node("Shape", &[like], vec![]);
        Ok(self.node("Reshape", &[&t, &shape], vec![]))
    }

    fn attention(&mut self, q: &String, k: &String, v: &String, heads: usize) -> Result<String> {
        // The width is known from the to_q weight; recover it from the last linear's bias.
        let width = self
            .nodes
            .iter()
            .rev()
            .find_map(|n| {
                (n.op_type.as_deref() == Some("Add") && n.output.first() == Some(q))
                    .then(|| n.input.get(1).and_then(|b| self.weights.get(b.as_str())).map(|w| w.shape[0]))
                    .flatten()
            })
            .ok_or_else(|| Error::Backend("attention: cannot infer the width of q".into()))?;
        let d = width / heads;
        let split = self.int_const(&[0, 0, heads as i64, d as i64]);
        let qh = self.node("Reshape", &[q, &split], vec![]);
        let qh = self.node("Transpose", &[&qh], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        // Scale q before the product (N x d values rather than N x N).
        let scale = self.float_const(&[], &[1.0 / (d as f32).sqrt()]);
        let qh = self.node("Mul", &[&qh, &scale], vec![]);
        let kh = self.node("Reshape", &[k, &split], vec![]);
        let kt = self.node("Transpose", &[&kh], vec![attr_ints("perm", &[0, 2, 3, 1])]);
        let vh = self.node("Reshape", &[v, &split], vec![]);
        let vh = self.node("Transpose", &[&vh], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let scores = self.node("MatMul", &[&qh, &kt], vec![]);
        let attn = self.node("Softmax", &[&scores], vec![attr_int("axis", -1)]);
        let o = self.node("MatMul", &[&attn, &vh], vec![]);
        let o = self.node("Transpose", &[&o], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let merge = self.int_const(&[0, 0, width as i64]);
        Ok(self.node("Reshape", &[&o, &merge], vec![]))
    }

    fn timestep_embedding(&mut self, t: &String, dim: usize, flip_sin_to_cos: bool, freq_shift: f64) -> Result<String> {
        // In float32 whatever the graph's float type: t * frequency reaches 1000.
        let freqs = timestep_frequencies(dim, freq_shift);
        let half = freqs.len();
        let f = self.f32_const(&[1, half], &freqs);
        let tf = self.node("Cast", &[t], vec![attr_int("to", DataType::Float as i64)]);
        let axes = self.int_const(&[1]);
        let t2 = self.node("Unsqueeze", &[&tf, &axes], vec![]);
        let args = self.node("Mul", &[&t2, &f], vec![]);
        let sin = self.node("Sin", &[&args], vec![]);
        let cos = self.node("Cos", &[&args], vec![]);
        let (a, b) = if flip_sin_to_cos { (cos, sin) } else { (sin, cos) };
        let mut emb = self.node("Concat", &[&a, &b], vec![attr_int("axis", 1)]);
        if dim % 2 == 1 {
            let pads = self.int_const(&[0, 0, 0, 1]);
            emb = self.node("Pad", &[&emb, &pads], vec![attr_string("mode", "constant")]);
        }
        Ok(self.to_graph_float(&emb))
    }

    fn flatten(&mut self, x: &String) -> Result<String> {
        Ok(self.node("Flatten", &[x], vec![attr_int("axis", 1)]))
    }

    fn embedding(&mut self, ids: &String, table: &String) -> Result<String> {
        self.use_param(table)?;
        Ok(self.node("Gather", &[table, ids], vec![attr_int("axis", 0)]))
    }
}
