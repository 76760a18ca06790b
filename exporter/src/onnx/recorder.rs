//! The ONNX implementation of the U-Net's ops trait: each call appends nodes to a graph
//! and each parameter becomes an initializer, so walking the forward pass once records
//! the whole network.

use std::collections::HashMap;

use ddpm_models::ops::{timestep_frequencies, Backend};
use ddpm_models::{Error, Result, Weights};

use super::proto::{tensor_proto::DataType, NodeProto, TensorProto};
use super::{attr_float, attr_int, attr_ints, attr_string, float_tensor, int64_tensor};

/// How the graph stores its weights and computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportPrecision {
    /// float32 weights and activations.
    #[default]
    Fp32,
    /// float16 weights and activations (inputs and outputs stay float32).
    Fp16,
    /// Weights stored as float16 and cast to float32 once, at session start: half the file,
    /// float32 arithmetic.
    WeightsFp16,
}

/// A recorded tensor: its name in the graph, its dimensions (None: the dynamic batch, or a
/// size the graph computes at run time) and its element type.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub name: String,
    pub dims: Vec<Option<usize>>,
    pub elem: DataType,
}

impl Value {
    /// A graph input (or any named value) of these dimensions.
    pub fn new(name: &str, dims: &[Option<usize>], elem: DataType) -> Self {
        Self { name: name.into(), dims: dims.to_vec(), elem }
    }
    fn dim(&self, i: usize) -> Option<usize> {
        self.dims.get(i).copied().flatten()
    }
    fn with(&self, name: String, dims: Vec<Option<usize>>) -> Self {
        Self { name, dims, elem: self.elem }
    }
}

fn shape_error(op: &str, msg: String) -> Error {
    Error::Shape(format!("{op}: {msg}"))
}

/// Records nodes and initializers.
pub struct Recorder<'w> {
    weights: &'w Weights,
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<TensorProto>,
    consts: HashMap<String, String>,
    counter: usize,
    precision: ExportPrecision,
    /// Weights and activations in float16.
    fp16: bool,
}

impl<'w> Recorder<'w> {
    pub fn new(weights: &'w Weights, precision: ExportPrecision) -> Self {
        let fp16 = precision == ExportPrecision::Fp16;
        Self { weights, nodes: Vec::new(), initializers: Vec::new(), consts: HashMap::new(), counter: 0, precision, fp16 }
    }

    /// The element type of the graph's floats.
    fn float(&self) -> DataType {
        if self.fp16 {
            DataType::Float16
        } else {
            DataType::Float
        }
    }

    /// Appends a node and returns its output as a value of these dimensions, in the element
    /// type of `like`.
    fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<super::proto::AttributeProto>, like: &Value, dims: Vec<Option<usize>>) -> Value {
        let name = self.node(op, inputs, attrs);
        like.with(name, dims)
    }

    /// Adds a weight initializer named `name` (float16 storage plus a Cast when
    /// `weights_fp16`).
    fn add_weight(&mut self, name: &str, dims: &[usize], data: &[f32]) {
        if self.precision == ExportPrecision::WeightsFp16 {
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
        self.weights.get(name).ok_or_else(|| Error::Weight { file: "checkpoint".into(), name: name.into(), msg: "missing".into() })
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
    pub(crate) fn cast_to_graph_float(&mut self, x: &Value) -> Value {
        if self.fp16 && x.elem != DataType::Float16 {
            let name = self.node("Cast", &[&x.name], vec![attr_int("to", DataType::Float16 as i64)]);
            Value { name, dims: x.dims.clone(), elem: DataType::Float16 }
        } else {
            x.clone()
        }
    }

    /// Casts a graph-float value back to float32.
    pub(crate) fn cast_to_f32(&mut self, x: &Value) -> Value {
        if x.elem != DataType::Float {
            let name = self.node("Cast", &[&x.name], vec![attr_int("to", DataType::Float as i64)]);
            Value { name, dims: x.dims.clone(), elem: DataType::Float }
        } else {
            x.clone()
        }
    }
}

impl Backend for Recorder<'_> {
    type Tensor = Value;

    fn param(&mut self, name: &str, shape: &[usize]) -> Result<Value> {
        let w = self.weight(name)?;
        if w.shape != shape {
            return Err(Error::Weight {
                file: "checkpoint".into(),
                name: name.into(),
                msg: format!("shape {:?}, expected {shape:?}", w.shape),
            });
        }
        // The initializer is added where the parameter is used, in the layout that use
        // wants (a linear layer's weight transposed, a norm's as [C, 1, 1]).
        Ok(Value::new(name, &shape.iter().map(|&d| Some(d)).collect::<Vec<_>>(), self.float()))
    }

    fn conv2d(&mut self, x: &Value, w: &Value, b: &Value, stride: usize, padding: usize) -> Result<Value> {
        let [cout, cin, k, _] = [w.dim(0), w.dim(1), w.dim(2), w.dim(3)].map(|d| d.unwrap_or(0));
        if x.dims.len() != 4 || x.dim(1).is_some_and(|c| c != cin) {
            return Err(shape_error("conv2d", format!("input {} of dims {:?}, expected [B, {cin}, H, W] for {}", x.name, x.dims, w.name)));
        }
        self.use_param(&w.name)?;
        self.use_param(&b.name)?;
        let (s, p) = (stride as i64, padding as i64);
        let out = |d: Option<usize>| d.map(|d| (d + 2 * padding - k) / stride + 1);
        let dims = vec![x.dim(0), Some(cout), out(x.dim(2)), out(x.dim(3))];
        Ok(self.op(
            "Conv",
            &[&x.name, &w.name, &b.name],
            vec![attr_ints("kernel_shape", &[k as i64, k as i64]), attr_ints("strides", &[s, s]), attr_ints("pads", &[p, p, p, p])],
            x,
            dims,
        ))
    }

    fn pad_bottom_right(&mut self, x: &Value) -> Result<Value> {
        let pads = self.int_const(&[0, 0, 0, 0, 0, 0, 1, 1]);
        let dims = vec![x.dim(0), x.dim(1), x.dim(2).map(|h| h + 1), x.dim(3).map(|w| w + 1)];
        Ok(self.op("Pad", &[&x.name, &pads], vec![attr_string("mode", "constant")], x, dims))
    }

    fn group_norm(&mut self, x: &Value, groups: usize, eps: f64, w: &Value, b: &Value) -> Result<Value> {
        // [B, C, H, W] -> [B, G, C/G*H*W] -> InstanceNormalization (per group) -> back,
        // then the per-channel affine: the pattern ORT's CPU kernels run fastest.
        let c = w.dim(0).unwrap_or(0);
        if x.dim(1).is_some_and(|xc| xc != c) {
            return Err(shape_error("group_norm", format!("input {} of dims {:?}, expected {c} channels for {}", x.name, x.dims, w.name)));
        }
        let grouped_shape = self.int_const(&[0, groups as i64, -1]);
        let grouped = self.node("Reshape", &[&x.name, &grouped_shape], vec![]);
        let ones = self.float_const(&[groups], &vec![1.0; groups]);
        let zeros = self.float_const(&[groups], &vec![0.0; groups]);
        let normed = self.node("InstanceNormalization", &[&grouped, &ones, &zeros], vec![attr_float("epsilon", eps as f32)]);
        let shape = self.node("Shape", &[&x.name], vec![]);
        let back = self.node("Reshape", &[&normed, &shape], vec![]);
        // Per-channel scale and shift as [C, 1, 1] initializers.
        let (wd, bd) = (self.weight(&w.name)?.data.clone(), self.weight(&b.name)?.data.clone());
        let w3 = format!("{}.chw", w.name);
        let b3 = format!("{}.chw", b.name);
        if !self.has_weight(&w3) {
            self.add_weight(&w3, &[c, 1, 1], &wd);
            self.add_weight(&b3, &[c, 1, 1], &bd);
        }
        let scaled = self.node("Mul", &[&back, &w3], vec![]);
        Ok(self.op("Add", &[&scaled, &b3], vec![], x, x.dims.clone()))
    }

    fn linear(&mut self, x: &Value, w: &Value, b: &Value) -> Result<Value> {
        let (out_f, in_f) = (w.dim(0).unwrap_or(0), w.dim(1).unwrap_or(0));
        if x.dims.last().copied().flatten().is_some_and(|d| d != in_f) {
            return Err(shape_error("linear", format!("input {} of dims {:?}, expected {in_f} features for {}", x.name, x.dims, w.name)));
        }
        // x W^T with W^T stored once as an [in, out] initializer.
        let wt = format!("{}.T", w.name);
        if !self.has_weight(&wt) {
            let weight = self.weight(&w.name)?;
            let mut t = vec![0.0f32; in_f * out_f];
            for o in 0..out_f {
                for i in 0..in_f {
                    t[i * out_f + o] = weight.data[o * in_f + i];
                }
            }
            self.add_weight(&wt, &[in_f, out_f], &t);
        }
        self.use_param(&b.name)?;
        let y = self.node("MatMul", &[&x.name, &wt], vec![]);
        let mut dims = x.dims.clone();
        if let Some(last) = dims.last_mut() {
            *last = Some(out_f);
        }
        Ok(self.op("Add", &[&y, &b.name], vec![], x, dims))
    }

    fn silu(&mut self, x: &Value) -> Result<Value> {
        let s = self.node("Sigmoid", &[&x.name], vec![]);
        Ok(self.op("Mul", &[&x.name, &s], vec![], x, x.dims.clone()))
    }

    fn dropout(&mut self, x: &Value, _p: f64) -> Result<Value> {
        Ok(x.clone()) // inference graph
    }

    fn add(&mut self, a: &Value, b: &Value) -> Result<Value> {
        if a.dims.len() != b.dims.len() || a.dims.iter().zip(&b.dims).any(|(x, y)| x.is_some() && y.is_some() && x != y) {
            return Err(shape_error("add", format!("{} of dims {:?} and {} of dims {:?}", a.name, a.dims, b.name, b.dims)));
        }
        Ok(self.op("Add", &[&a.name, &b.name], vec![], a, a.dims.clone()))
    }

    fn add_per_channel(&mut self, x: &Value, v: &Value) -> Result<Value> {
        let axes = self.int_const(&[2, 3]);
        let v4 = self.node("Unsqueeze", &[&v.name, &axes], vec![]);
        Ok(self.op("Add", &[&x.name, &v4], vec![], x, x.dims.clone()))
    }

    fn affine(&mut self, x: &Value, mul: f64, add: f64) -> Result<Value> {
        let mut y = x.clone();
        if mul != 1.0 {
            let m = self.float_const(&[], &[mul as f32]);
            y = self.op("Mul", &[&y.name, &m], vec![], x, x.dims.clone());
        }
        if add != 0.0 {
            let a = self.float_const(&[], &[add as f32]);
            y = self.op("Add", &[&y.name, &a], vec![], x, x.dims.clone());
        }
        Ok(y)
    }

    fn concat_channels(&mut self, a: &Value, b: &Value) -> Result<Value> {
        let c = a.dim(1).zip(b.dim(1)).map(|(x, y)| x + y);
        let dims = vec![a.dim(0), c, a.dim(2), a.dim(3)];
        Ok(self.op("Concat", &[&a.name, &b.name], vec![attr_int("axis", 1)], a, dims))
    }

    fn upsample_nearest2x(&mut self, x: &Value) -> Result<Value> {
        let scales = self.f32_const(&[4], &[1.0, 1.0, 2.0, 2.0]);
        let dims = vec![x.dim(0), x.dim(1), x.dim(2).map(|h| 2 * h), x.dim(3).map(|w| 2 * w)];
        Ok(self.op(
            "Resize",
            &[&x.name, "", &scales],
            vec![
                attr_string("mode", "nearest"),
                attr_string("coordinate_transformation_mode", "asymmetric"),
                attr_string("nearest_mode", "floor"),
            ],
            x,
            dims,
        ))
    }

    fn to_tokens(&mut self, x: &Value) -> Result<Value> {
        let shape = self.int_const(&[0, 0, -1]);
        let flat = self.node("Reshape", &[&x.name, &shape], vec![]);
        let dims = vec![x.dim(0), x.dim(2).zip(x.dim(3)).map(|(h, w)| h * w), x.dim(1)];
        Ok(self.op("Transpose", &[&flat], vec![attr_ints("perm", &[0, 2, 1])], x, dims))
    }

    fn tokens_to_image(&mut self, x: &Value, like: &Value) -> Result<Value> {
        let t = self.node("Transpose", &[&x.name], vec![attr_ints("perm", &[0, 2, 1])]);
        let shape = self.node("Shape", &[&like.name], vec![]);
        Ok(self.op("Reshape", &[&t, &shape], vec![], x, like.dims.clone()))
    }

    fn attention(&mut self, q: &Value, k: &Value, v: &Value, heads: usize) -> Result<Value> {
        let width = q.dims.last().copied().flatten().filter(|&w| heads > 0 && w % heads == 0).ok_or_else(|| {
            shape_error("attention", format!("q {} of dims {:?}, expected [B, N, C] with C divisible by {heads} heads", q.name, q.dims))
        })?;
        let d = width / heads;
        let split = self.int_const(&[0, 0, heads as i64, d as i64]);
        let qh = self.node("Reshape", &[&q.name, &split], vec![]);
        let qh = self.node("Transpose", &[&qh], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        // Scale q before the product (N x d values rather than N x N).
        let scale = self.float_const(&[], &[1.0 / (d as f32).sqrt()]);
        let qh = self.node("Mul", &[&qh, &scale], vec![]);
        let kh = self.node("Reshape", &[&k.name, &split], vec![]);
        let kt = self.node("Transpose", &[&kh], vec![attr_ints("perm", &[0, 2, 3, 1])]);
        let vh = self.node("Reshape", &[&v.name, &split], vec![]);
        let vh = self.node("Transpose", &[&vh], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let scores = self.node("MatMul", &[&qh, &kt], vec![]);
        let attn = self.node("Softmax", &[&scores], vec![attr_int("axis", -1)]);
        let o = self.node("MatMul", &[&attn, &vh], vec![]);
        let o = self.node("Transpose", &[&o], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let merge = self.int_const(&[0, 0, width as i64]);
        Ok(self.op("Reshape", &[&o, &merge], vec![], q, q.dims.clone()))
    }

    fn timestep_embedding(&mut self, t: &Value, dim: usize, flip_sin_to_cos: bool, freq_shift: f64) -> Result<Value> {
        // In float32 whatever the graph's float type: t * frequency reaches 1000.
        let freqs = timestep_frequencies(dim, freq_shift);
        let half = freqs.len();
        let f = self.f32_const(&[1, half], &freqs);
        let tf = self.node("Cast", &[&t.name], vec![attr_int("to", DataType::Float as i64)]);
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
        let emb = Value { name: emb, dims: vec![t.dim(0), Some(dim)], elem: DataType::Float };
        Ok(self.cast_to_graph_float(&emb))
    }

    fn flatten(&mut self, x: &Value) -> Result<Value> {
        let rest = x.dims[1..].iter().try_fold(1usize, |acc, d| d.map(|d| acc * d));
        Ok(self.op("Flatten", &[&x.name], vec![attr_int("axis", 1)], x, vec![x.dim(0), rest]))
    }

    fn embedding(&mut self, ids: &Value, table: &Value) -> Result<Value> {
        self.use_param(&table.name)?;
        Ok(self.op("Gather", &[&table.name, &ids.name], vec![attr_int("axis", 0)], table, vec![ids.dim(0), table.dim(1)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddpm_models::{random_weights, UNet2DModel, UNetConfig};

    #[test]
    fn recorded_values_carry_their_shape_and_type() {
        let config = UNetConfig::digits();
        let weights = random_weights(&config, 0).unwrap();
        for precision in [ExportPrecision::Fp32, ExportPrecision::Fp16] {
            let mut rec = Recorder::new(&weights, precision);
            let sample = Value::new("sample", &[None, Some(1), Some(28), Some(28)], DataType::Float);
            let x = rec.cast_to_graph_float(&sample);
            let t = Value::new("timestep", &[None], DataType::Int64);
            let y = Value::new("class_labels", &[None], DataType::Int64);
            let out = UNet2DModel::new(config.clone()).unwrap().forward(&mut rec, &x, &t, Some(&y)).unwrap();
            assert_eq!(out.dims, vec![None, Some(1), Some(28), Some(28)]);
            let float = if precision == ExportPrecision::Fp16 { DataType::Float16 } else { DataType::Float };
            assert_eq!(out.elem, float);
            assert_eq!(rec.cast_to_f32(&out).elem, DataType::Float);
        }
    }

    #[test]
    fn a_mismatched_input_is_a_shape_error_naming_the_op() {
        let config = UNetConfig::digits();
        let weights = random_weights(&config, 0).unwrap();
        let mut rec = Recorder::new(&weights, ExportPrecision::Fp32);
        let sample = Value::new("sample", &[None, Some(3), Some(28), Some(28)], DataType::Float);
        let t = Value::new("timestep", &[None], DataType::Int64);
        let y = Value::new("class_labels", &[None], DataType::Int64);
        let e = UNet2DModel::new(config).unwrap().forward(&mut rec, &sample, &t, Some(&y)).unwrap_err();
        assert!(e.to_string().contains("conv2d: input sample"), "{e}");
    }
}
