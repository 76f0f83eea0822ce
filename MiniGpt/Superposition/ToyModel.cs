namespace MiniGpt.Superposition;

/// <summary>
/// The ReLU output model of Elhage et al. 2022, "Toy Models of Superposition" (section "Demonstrating
/// Superposition"): n features squeezed through m &lt; n dimensions by W [m, n] and read back with its transpose,
///   h = W·x,   x' = ReLU(Wᵀ·h + b) = ReLU(WᵀW·x + b),
///   loss = (1/B)·Σ_b Σ_i I_i·(x_bi − x'_bi)²      (importance-weighted squared error, averaged over the batch).
/// Column i of W, W_i ∈ ℝᵐ, is feature i's direction: WᵀW[i, j] = W_i·W_j says how much feature j leaks into
/// feature i's output. Forward and backward are written by hand (no autograd), llm.c style: each line of
/// <see cref="Backward"/> quotes the line of <see cref="Forward"/> it differentiates. Everything is serial and
/// in a fixed order, so a model trains to the same bits for a seed whatever thread it runs on.
/// </summary>
public sealed class ToyModel
{
    public int N { get; }
    public int M { get; }
    /// <summary>W [m, n] row-major: W[k, i] = W[k·n + i], the k-th hidden coordinate of feature i's direction.</summary>
    public float[] W { get; }
    /// <summary>b [n]: the output bias (negative biases are how the ReLU filters interference).</summary>
    public float[] B { get; }
    /// <summary>I [n]: the importance of each feature in the loss.</summary>
    public float[] Importance { get; }

    public ToyModel(int n, int m, float[] importance)
    {
        if (n < 1 || m < 1) throw new ArgumentException($"need n ≥ 1 and m ≥ 1, got n = {n}, m = {m}");
        if (importance.Length != n) throw new ArgumentException($"importance has {importance.Length} values for {n} features");
        N = n; M = m;
        W = new float[m * n];
        B = new float[n];
        Importance = importance;
    }

    /// <summary>
    /// W ~ Xavier normal, std √(2/(m + n)) (torch.nn.init.xavier_normal_, as the paper's notebook initialises W),
    /// b = 0. Drawn in row-major order from rng.
    /// </summary>
    public void Initialize(ref Rng rng)
    {
        double std = Math.Sqrt(2.0 / (M + N));
        for (int i = 0; i < W.Length; i++) W[i] = (float)(std * rng.NextNormal());
        Array.Clear(B);
    }

    /// <summary>I_i = r^i (i = 0 … n−1): the paper's geometrically decaying importance (0.9^i in its notebook's n = 5, m = 2 models, 0.7^i in the n = 20, m = 5 figures).</summary>
    public static float[] GeometricImportance(int n, double r)
    {
        var imp = new float[n];
        for (int i = 0; i < n; i++) imp[i] = (float)Math.Pow(r, i);
        return imp;
    }

    /// <summary>
    /// x [B, n] → h [B, m], pre [B, n] (Wᵀh + b, before the ReLU), out [B, n] (x'); returns the loss
    /// (1/B)·Σ_b Σ_i I_i·(x_bi − out_bi)² (each row summed in float, the rows in double, in order). Sparse inputs are mostly 0, and
    /// a term W·0 adds exactly nothing, so the loops skip zero inputs (and the backward zero gradients): the
    /// result is bit for bit that of the dense loops, at a cost that falls with the sparsity.
    /// </summary>
    public double Forward(ReadOnlySpan<float> x, Span<float> h, Span<float> pre, Span<float> output, int batch)
    {
        int n = N, m = M;
        ReadOnlySpan<float> w = W, b = B, imp = Importance;
        double loss = 0;
        for (int bi = 0; bi < batch; bi++)
        {
            var xb = x.Slice(bi * n, n);
            var hb = h.Slice(bi * m, m);
            var pb = pre.Slice(bi * n, n);
            var ob = output.Slice(bi * n, n);
            // h[b, k] = Σ_i W[k, i]·x[b, i]                         h = W·x            [m] per row
            hb.Clear();
            for (int i = 0; i < n; i++)
            {
                float xi = xb[i];
                if (xi == 0) continue;
                for (int k = 0; k < m; k++) hb[k] += w[k * n + i] * xi;
            }
            // pre[b, i] = b[i] + Σ_k W[k, i]·h[b, k]                pre = Wᵀ·h + b     [n]
            for (int i = 0; i < n; i++)
            {
                float s = b[i];
                for (int k = 0; k < m; k++) s += w[k * n + i] * hb[k];
                pb[i] = s;
            }
            // out[b, i] = max(pre[b, i], 0)                         x' = ReLU(pre)
            // loss += I_i·(x[b, i] − out[b, i])²                     loss = (1/B)·Σ_b Σ_i I_i·(x − x')²
            float row = 0; // one row in float (n terms), the batch in double
            for (int i = 0; i < n; i++)
            {
                float o = ob[i] = pb[i] > 0 ? pb[i] : 0f;
                float e = xb[i] - o;
                row += imp[i] * e * e;
            }
            loss += row;
        }
        return loss / batch;
    }

    /// <summary>
    /// Differentiates <see cref="Forward"/> on the same x, h, pre and out: writes (not accumulates) dW [m, n]
    /// and db [n]; dh [m] and dpre [n] are one row's scratch.
    /// </summary>
    public void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> h, ReadOnlySpan<float> pre, ReadOnlySpan<float> output,
        Span<float> dW, Span<float> db, Span<float> dh, Span<float> dpre, int batch)
    {
        int n = N, m = M;
        ReadOnlySpan<float> w = W, imp = Importance;
        dW[..(m * n)].Clear();
        db[..n].Clear();
        float scale = 2f / batch;
        for (int bi = 0; bi < batch; bi++)
        {
            var xb = x.Slice(bi * n, n);
            var hb = h.Slice(bi * m, m);
            var pb = pre.Slice(bi * n, n);
            var ob = output.Slice(bi * n, n);
            // loss = (1/B)·Σ I_i·(x − out)²   →   dout[i] = (2/B)·I_i·(out[i] − x[i])
            // out = max(pre, 0)                →   dpre[i] = dout[i] if pre[i] > 0, else 0
            for (int i = 0; i < n; i++)
                dpre[i] = pb[i] > 0 ? scale * imp[i] * (ob[i] - xb[i]) : 0f;
            // pre[i] = b[i] + Σ_k W[k, i]·h[k] →   db[i] += dpre[i];  dW[k, i] += h[k]·dpre[i];  dh[k] = Σ_i W[k, i]·dpre[i]
            dh.Clear();
            for (int i = 0; i < n; i++)
            {
                float gi = dpre[i];
                if (gi == 0) continue;
                db[i] += gi;
                for (int k = 0; k < m; k++)
                {
                    dW[k * n + i] += hb[k] * gi;
                    dh[k] += w[k * n + i] * gi;
                }
            }
            // h[k] = Σ_i W[k, i]·x[i]          →   dW[k, i] += dh[k]·x[i]   (W's second use: the weights are tied)
            for (int i = 0; i < n; i++)
            {
                float xi = xb[i];
                if (xi == 0) continue;
                for (int k = 0; k < m; k++) dW[k * n + i] += dh[k] * xi;
            }
        }
    }
}
