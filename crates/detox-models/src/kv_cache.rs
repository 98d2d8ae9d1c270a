//! The decoder's key/value cache, kept outside the modules: the caller owns one per
//! self-attention layer and passes it to `forward`.

use burn::prelude::*;

/// Keys and values of one self-attention layer, `[batch, heads, positions, d_head]`.
///
/// The buffer is allocated once for `capacity` positions and written in place; it only grows
/// (doubling) when decoding runs past the planned length.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    k: Option<Tensor<B, 4>>,
    v: Option<Tensor<B, 4>>,
    len: usize,
    capacity: usize,
}

impl<B: Backend> KvCache<B> {
    pub fn new(capacity: usize) -> Self {
        Self {
            k: None,
            v: None,
            len: 0,
            capacity: capacity.max(1),
        }
    }

    /// Cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn grow(buf: Option<Tensor<B, 4>>, like: &Tensor<B, 4>, capacity: usize) -> Tensor<B, 4> {
        let [b, h, _, d] = like.dims();
        let device = like.device();
        match buf {
            None => Tensor::zeros([b, h, capacity, d], &device),
            Some(old) => {
                let have = old.dims()[2];
                Tensor::cat(
                    vec![old, Tensor::zeros([b, h, capacity - have, d], &device)],
                    2,
                )
            }
        }
    }

    /// Appends `k`/`v` (`[batch, heads, new, d_head]`) and returns all cached keys and values.
    pub fn append(&mut self, k: Tensor<B, 4>, v: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, h, new, d] = k.dims();
        let end = self.len + new;
        if self.k.is_none() || end > self.capacity {
            if end > self.capacity {
                self.capacity = (2 * self.capacity).max(end);
            }
            self.k = Some(Self::grow(self.k.take(), &k, self.capacity));
            self.v = Some(Self::grow(self.v.take(), &v, self.capacity));
        }
        let range = [0..b, 0..h, self.len..end, 0..d];
        let kb = self.k.take().unwrap().slice_assign(range.clone(), k);
        let vb = self.v.take().unwrap().slice_assign(range, v);
        self.len = end;
        let view = [0..b, 0..h, 0..end, 0..d];
        let out = (kb.clone().slice(view.clone()), vb.clone().slice(view));
        self.k = Some(kb);
        self.v = Some(vb);
        out
    }

    /// Keep only batch rows `rows` (in that order; a row may repeat, as when beam search
    /// continues one beam in several ways).
    pub fn select_rows(&mut self, rows: Tensor<B, 1, Int>) {
        let len = self.len;
        self.k = self
            .k
            .take()
            .map(|t| select_filled_rows(t, rows.clone(), len));
        self.v = self.v.take().map(|t| select_filled_rows(t, rows, len));
    }
}

/// `buf.select(0, rows)` for a `[batch, heads, capacity, d]` buffer of which only the first
/// `len` positions are written. On burn-flex the filled positions alone are copied, in parallel
/// over (row, head) blocks (a beam search step reorders every layer's cache: on one core and
/// over the whole capacity that copy was a tenth of the step); elsewhere burn's `select`.
fn select_filled_rows<B: Backend>(
    buf: Tensor<B, 4>,
    rows: Tensor<B, 1, Int>,
    len: usize,
) -> Tensor<B, 4> {
    use burn_flex::FlexTensor;
    use rayon::prelude::*;

    let [b, h, cap, d] = buf.dims();
    let f = match crate::kernels::primitive_as::<FlexTensor, B, 4>(buf) {
        Ok(f) if f.dtype() == burn::tensor::DType::F32 && f.is_contiguous() => f,
        Ok(f) => return crate::kernels::tensor_of::<B, 4, _>(f).select(0, rows),
        Err(t) => return t.select(0, rows),
    };
    let index: Vec<usize> = rows
        .into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .expect("int rows")
        .into_iter()
        .map(|r| {
            assert!(r >= 0 && (r as usize) < b, "row {r} of a batch of {b}");
            r as usize
        })
        .collect();
    let src = crate::kernels::data(&f);
    let block = cap * d; // one (row, head)
    let filled = len.min(cap) * d;
    // every element written once: the filled positions copied, the rest zero
    let mut out: Vec<f32> = Vec::with_capacity(index.len() * h * block);
    out.spare_capacity_mut()
        .par_chunks_mut(block)
        .enumerate()
        .for_each(|(i, dst)| {
            let (row, head) = (index[i / h], i % h);
            let from = (row * h + head) * block;
            let (head_part, tail) = dst.split_at_mut(filled);
            for (d, &s) in head_part.iter_mut().zip(&src[from..from + filled]) {
                d.write(s);
            }
            for d in tail {
                d.write(0.0);
            }
        });
    // SAFETY: the loop above initialized all `index.len() * h * block` elements.
    unsafe { out.set_len(index.len() * h * block) };
    crate::kernels::tensor_of(crate::kernels::new_flex(out, &[index.len(), h, cap, d]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reordering rows (with repeats) keeps each row's cached positions, on burn-flex's own
    /// copy and on burn's `select` (ndarray), and appending continues after them.
    fn reorder<B: Backend>() -> (Vec<f32>, Vec<f32>) {
        let device = Default::default();
        let mut c = KvCache::<B>::new(4);
        let step = |t: usize| {
            let vals: Vec<f32> = (0..3 * 2 * 2).map(|i| (i + 100 * t) as f32).collect();
            Tensor::<B, 4>::from_data(TensorData::new(vals, [3, 2, 1, 2]), &device)
        };
        c.append(step(0), step(0).neg());
        c.append(step(1), step(1).neg());
        c.select_rows(Tensor::<B, 1, Int>::from_data([2, 2, 0], &device));
        let (k, v) = c.append(step(2), step(2).neg());
        assert_eq!(k.dims(), [3, 2, 3, 2]);
        (
            k.into_data().to_vec().unwrap(),
            v.into_data().to_vec().unwrap(),
        )
    }

    #[test]
    fn reordered_rows_keep_their_positions_on_both_cpu_backends() {
        let (k, v) = reorder::<burn::backend::Flex>();
        assert_eq!((k.clone(), v), reorder::<burn::backend::NdArray<f32>>());
        // row 0 of the result is old row 2: positions 0 and 1 of row 2, then step 2's row 0
        assert_eq!(&k[..6], &[8.0, 9.0, 108.0, 109.0, 200.0, 201.0]);
    }
}
