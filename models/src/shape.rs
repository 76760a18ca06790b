//! A backend that only tracks shapes: walks the forward pass to list every parameter
//! (diffusers name and shape) a config needs, and checks the graph's shapes on the way.

use crate::config::UNetConfig;
use crate::error::{Error, Result};
use crate::ops::Backend;
use crate::unet::UNet2DModel;

/// Records parameter names and shapes; tensors are shapes.
#[derive(Debug, Default)]
pub struct ShapeBackend {
    pub params: Vec<(String, Vec<usize>)>,
}

fn err<T>(msg: String) -> Result<T> {
    Err(Error::Shape(msg))
}

impl Backend for ShapeBackend {
    type Tensor = Vec<usize>;

    fn param(&mut self, name: &str, shape: &[usize]) -> Result<Vec<usize>> {
        self.params.push((name.to_string(), shape.to_vec()));
        Ok(shape.to_vec())
    }
    fn conv2d(&mut self, x: &Vec<usize>, w: &Vec<usize>, _b: &Vec<usize>, stride: usize, padding: usize) -> Result<Vec<usize>> {
        if x[1] != w[1] {
            return err(format!("conv2d: input has {} channels, weight expects {}", x[1], w[1]));
        }
        let out = |n: usize| (n + 2 * padding - w[2]) / stride + 1;
        Ok(vec![x[0], w[0], out(x[2]), out(x[3])])
    }
    fn pad_bottom_right(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(vec![x[0], x[1], x[2] + 1, x[3] + 1])
    }
    fn group_norm(&mut self, x: &Vec<usize>, groups: usize, _eps: f64, w: &Vec<usize>, _b: &Vec<usize>) -> Result<Vec<usize>> {
        if !x[1].is_multiple_of(groups) || w[0] != x[1] {
            return err(format!("group_norm: {} channels, {groups} groups, weight {}", x[1], w[0]));
        }
        Ok(x.clone())
    }
    fn linear(&mut self, x: &Vec<usize>, w: &Vec<usize>, _b: &Vec<usize>) -> Result<Vec<usize>> {
        let mut out = x.clone();
        let last = out.len() - 1;
        if out[last] != w[1] {
            return err(format!("linear: input width {}, weight expects {}", out[last], w[1]));
        }
        out[last] = w[0];
        Ok(out)
    }
    fn silu(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn dropout(&mut self, x: &Vec<usize>, _p: f64) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn add(&mut self, a: &Vec<usize>, b: &Vec<usize>) -> Result<Vec<usize>> {
        if a != b {
            return err(format!("add: shapes {a:?} and {b:?}"));
        }
        Ok(a.clone())
    }
    fn add_per_channel(&mut self, x: &Vec<usize>, v: &Vec<usize>) -> Result<Vec<usize>> {
        if v.len() != 2 || v[1] != x[1] {
            return err(format!("add_per_channel: {x:?} and {v:?}"));
        }
        Ok(x.clone())
    }
    fn affine(&mut self, x: &Vec<usize>, _m: f64, _a: f64) -> Result<Vec<usize>> {
        Ok(x.clone())
    }
    fn concat_channels(&mut self, a: &Vec<usize>, b: &Vec<usize>) -> Result<Vec<usize>> {
        if a[2..] != b[2..] {
            return err(format!("concat: {a:?} and {b:?}"));
        }
        Ok(vec![a[0], a[1] + b[1], a[2], a[3]])
    }
    fn upsample_nearest2x(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(vec![x[0], x[1], x[2] * 2, x[3] * 2])
    }
    fn to_tokens(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(vec![x[0], x[2] * x[3], x[1]])
    }
    fn tokens_to_image(&mut self, x: &Vec<usize>, like: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(vec![like[0], x[2], like[2], like[3]])
    }
    fn attention(&mut self, q: &Vec<usize>, _k: &Vec<usize>, _v: &Vec<usize>, heads: usize) -> Result<Vec<usize>> {
        if heads == 0 || !q[2].is_multiple_of(heads) {
            return err(format!("attention: width {} with {heads} heads", q[2]));
        }
        Ok(q.clone())
    }
    fn timestep_embedding(&mut self, t: &Vec<usize>, dim: usize, _f: bool, _s: f64) -> Result<Vec<usize>> {
        Ok(vec![t[0], dim])
    }
    fn embedding(&mut self, ids: &Vec<usize>, table: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(vec![ids[0], table[1]])
    }
    fn flatten(&mut self, x: &Vec<usize>) -> Result<Vec<usize>> {
        Ok(vec![x[0], x[1..].iter().product()])
    }
}

/// Every parameter of a config, in forward order: (diffusers name, shape).
pub fn parameter_list(config: &UNetConfig) -> Result<Vec<(String, Vec<usize>)>> {
    let model = UNet2DModel::new(config.clone())?;
    let (h, w) = config.sample_size.unwrap_or((64, 64));
    let mut b = ShapeBackend::default();
    let x = vec![1, config.in_channels, h, w];
    let labels = config.num_class_embeds.map(|_| vec![1]);
    let out = model.forward(&mut b, &x, &vec![1], labels.as_ref())?;
    if out != vec![1, config.out_channels, h, w] {
        return err(format!("the forward pass gives {out:?} for input {x:?}"));
    }
    Ok(b.params)
}

/// The number of parameters of a config.
pub fn parameter_count(config: &UNetConfig) -> Result<usize> {
    Ok(parameter_list(config)?.iter().map(|(_, s)| s.iter().product::<usize>()).sum())
}

/// Freshly initialised weights for a config ([`crate::init::pytorch_default`] from a seed):
/// for timing and export tests, where what the network computes does not matter.
pub fn random_weights(config: &UNetConfig, seed: u64) -> Result<crate::weights::Weights> {
    Ok(crate::init::pytorch_default(&parameter_list(config)?, seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddpm_cifar10_has_the_papers_parameter_count() {
        assert_eq!(parameter_count(&UNetConfig::ddpm_cifar10()).unwrap(), 35_746_307);
    }

    #[test]
    fn digits_parameter_count() {
        assert_eq!(parameter_count(&UNetConfig::digits()).unwrap(), 1_624_449);
    }
}
