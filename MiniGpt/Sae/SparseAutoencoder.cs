using System.Diagnostics;
using System.Numerics.Tensors;
using CommunityToolkit.HighPerformance;
using MiniGpt.Layers;
using MiniGpt.Tensors;

namespace MiniGpt.Sae;

/// <summary>
/// The activations of one SAE pass over N rows, kept for the backward (llm.c style: every intermediate survives).
/// Sized once for the largest N and reused, so a training step allocates nothing.
/// </summary>
public sealed class SaeActivations
{
    public SaeActivations(SaeConfig c, int rows)
    {
        Rows = rows;
        Centered = new float[rows * c.DIn];
        Pre = new float[rows * c.DSae];
        Features = new float[rows * c.DSae];
        Reconstruction = new float[rows * c.DIn];
        DReconstruction = new float[rows * c.DIn];
        DFeatures = new float[rows * c.DSae];
        DCentered = new float[rows * c.DIn];
        TopKScratch = new float[c.DSae];
        DecoderNorms = new float[c.DSae];
        FeatureSums = new float[c.DSae];
    }

    public int Rows { get; }
    /// <summary>x − b_dec [N, d_in].</summary>
    public float[] Centered { get; }
    /// <summary>(x − b_dec)·W_enc + b_enc [N, d_sae].</summary>
    public float[] Pre { get; }
    /// <summary>f, the feature activations [N, d_sae].</summary>
    public float[] Features { get; }
    /// <summary>x̂ = f·W_dec + b_dec [N, d_in].</summary>
    public float[] Reconstruction { get; }
    internal float[] DReconstruction { get; }
    internal float[] DFeatures { get; }
    internal float[] DCentered { get; }
    internal float[] TopKScratch { get; }
    /// <summary>‖W_dec,i‖ and Σ_n f_ni of the last Loss or Backward (the sparsity penalty's two factors).</summary>
    internal float[] DecoderNorms { get; }
    internal float[] FeatureSums { get; }
}

/// <summary>The loss of one pass: L = mse + λ·sparsity, mse = (1/N) Σ_n ‖x̂_n − x_n‖², sparsity = (1/N) Σ_n Σ_i f_ni ‖W_dec,i‖ (Relu only, else 0).</summary>
public readonly record struct SaeLoss(double Mse, double Sparsity, double L1Coefficient)
{
    public double Total => Mse + L1Coefficient * Sparsity;
}

/// <summary>
/// A sparse autoencoder x̂ = f(x)·W_dec + b_dec with f(x) = σ((x − b_dec)·W_enc + b_enc), in SAELens's layout:
/// W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in], one flat parameter buffer (and one for the
/// gradients) with named views, as the model's arena. σ is ReLU or ReLU∘TopK_k (<see cref="SaeArchitecture"/>).
/// Forward and Backward are plain methods over spans; the matrix products go through <see cref="IMatMul"/>, so the
/// scalar reference kernels (<see cref="Kernels.Reference"/>) run the same code for a debugger or a test.
/// </summary>
[DebuggerDisplay("SAE {Config.ArchitectureName} {Config.DIn} → {Config.DSae} on {Config.HookName}")]
public sealed class SparseAutoencoder
{
    public SaeConfig Config { get; }
    public IKernels Kernels { get; }
    /// <summary>All parameters: W_enc, b_enc, W_dec, b_dec, in that order.</summary>
    public float[] Parameters { get; }
    public float[] Gradients { get; }
    private readonly int _wEnc, _bEnc, _wDec, _bDec;

    public SparseAutoencoder(SaeConfig config, IKernels? kernels = null)
    {
        config.Validate();
        Config = config;
        Kernels = kernels ?? Layers.Kernels.Default;
        int d = config.DIn, s = config.DSae;
        _wEnc = 0; _bEnc = d * s; _wDec = _bEnc + s; _bDec = _wDec + s * d;
        Parameters = new float[_bDec + d];
        Gradients = new float[Parameters.Length];
    }

    public Span<float> WEnc => Parameters.AsSpan(_wEnc, Config.DIn * Config.DSae);
    public Span<float> BEnc => Parameters.AsSpan(_bEnc, Config.DSae);
    public Span<float> WDec => Parameters.AsSpan(_wDec, Config.DSae * Config.DIn);
    public Span<float> BDec => Parameters.AsSpan(_bDec, Config.DIn);
    public Span<float> DWEnc => Gradients.AsSpan(_wEnc, Config.DIn * Config.DSae);
    public Span<float> DBEnc => Gradients.AsSpan(_bEnc, Config.DSae);
    public Span<float> DWDec => Gradients.AsSpan(_wDec, Config.DSae * Config.DIn);
    public Span<float> DBDec => Gradients.AsSpan(_bDec, Config.DIn);

    /// <summary>The parameter segments for AdamW (no weight decay on any: the sparsity penalty is the regulariser).</summary>
    public ParamSegment[] Segments => [new(_wEnc, _bEnc - _wEnc, false), new(_bEnc, _wDec - _bEnc, false), new(_wDec, _bDec - _wDec, false), new(_bDec, Config.DIn, false)];

    /// <summary>The tensors under their SAELens names and shapes, for safetensors.</summary>
    public IReadOnlyList<(string Name, int[] Shape, ReadOnlyMemory<float> Data)> Tensors()
    {
        int d = Config.DIn, s = Config.DSae;
        var p = (ReadOnlyMemory<float>)Parameters;
        return [("W_enc", [d, s], p.Slice(_wEnc, d * s)), ("b_enc", [s], p.Slice(_bEnc, s)), ("W_dec", [s, d], p.Slice(_wDec, s * d)), ("b_dec", [d], p.Slice(_bDec, d))];
    }

    /// <summary>
    /// Initialises as Anthropic's April 2024 update does: W_dec rows random directions of norm decoderNorm (Relu: 0.1;
    /// TopK: unit norm, Gao et al.), W_enc = W_decᵀ, biases 0 (b_dec is then usually set to the data's mean).
    /// </summary>
    public void Initialise(ulong seed, float decoderNorm)
    {
        var rng = new Rng(seed);
        int d = Config.DIn, s = Config.DSae;
        var wDec = WDec;
        for (int i = 0; i < wDec.Length; i++) wDec[i] = (float)rng.NextNormal();
        for (int i = 0; i < s; i++)
        {
            var row = wDec.Slice(i * d, d);
            TensorPrimitives.Multiply(row, decoderNorm / TensorPrimitives.Norm(row), row);
        }
        var wEnc = WEnc;
        for (int i = 0; i < s; i++)
            for (int j = 0; j < d; j++) wEnc[j * s + i] = wDec[i * d + j];
        BEnc.Clear();
        BDec.Clear();
    }

    // ---------------------------------------------------------------- forward

    /// <summary>
    /// x [N, d_in] → a.Pre, a.Features [N, d_sae], a.Reconstruction [N, d_in]:
    ///   xc = x − b_dec;  pre = xc·W_enc + b_enc;  f = σ(pre);  x̂ = f·W_dec + b_dec.
    /// </summary>
    public void Forward(ReadOnlySpan<float> x, int N, SaeActivations a)
    {
        int d = Config.DIn, s = Config.DSae;
        CheckRows(x, N, a);
        var xc = a.Centered.AsSpan(0, N * d);
        var bDec = BDec;
        for (int n = 0; n < N; n++) TensorPrimitives.Subtract(x.Slice(n * d, d), bDec, xc.Slice(n * d, d));
        var pre = a.Pre.AsSpan(0, N * s);
        Kernels.MatMul.NN(new ReadOnlySpan2D<float>(a.Centered, 0, N, d, 0), new ReadOnlySpan2D<float>(Parameters, _wEnc, d, s, 0), new Span2D<float>(a.Pre, 0, N, s, 0), false);
        Kernels.AddBias(pre, BEnc, N, s);
        var f = a.Features.AsSpan(0, N * s);
        if (Config.Architecture == SaeArchitecture.TopK) TopKRelu(pre, f, N, s, Config.K, a.TopKScratch);
        else TensorPrimitives.Max(pre, 0f, f);
        Decode(a.Features, N, a.Reconstruction);
    }

    /// <summary>x̂ [N, d_in] = f [N, d_sae]·W_dec + b_dec.</summary>
    public void Decode(float[] f, int N, float[] xhat)
    {
        int d = Config.DIn, s = Config.DSae;
        Kernels.MatMul.NN(new ReadOnlySpan2D<float>(f, 0, N, s, 0), new ReadOnlySpan2D<float>(Parameters, _wDec, s, d, 0), new Span2D<float>(xhat, 0, N, d, 0), false);
        Kernels.AddBias(xhat.AsSpan(0, N * d), BDec, N, d);
    }

    /// <summary>
    /// f[n] = ReLU of the k largest entries of pre[n], 0 elsewhere. Ties at the k-th value keep the lower indices, so
    /// the result is deterministic. The k-th largest is found by selection on a copy (O(d_sae) per row on average).
    /// </summary>
    public static void TopKRelu(ReadOnlySpan<float> pre, Span<float> f, int N, int S, int k, Span<float> scratch)
    {
        for (int n = 0; n < N; n++)
        {
            var p = pre.Slice(n * S, S);
            var o = f.Slice(n * S, S);
            o.Clear();
            if (k >= S) { TensorPrimitives.Max(p, 0f, o); continue; }
            p.CopyTo(scratch);
            float kth = Select(scratch[..S], k - 1); // the k-th largest value
            int above = 0;
            for (int i = 0; i < S; i++) if (p[i] > kth) above++;
            int ties = k - above; // how many entries equal to kth are kept, lowest index first
            for (int i = 0; i < S; i++)
            {
                float v = p[i];
                if (v > kth || (v == kth && ties-- > 0)) o[i] = v > 0 ? v : 0;
            }
        }
    }

    // Hoare's quickselect for the r-th largest (0-based) of a, which it reorders; median-of-three pivots
    private static float Select(Span<float> a, int r)
    {
        int lo = 0, hi = a.Length - 1;
        while (lo < hi)
        {
            int mid = lo + (hi - lo) / 2;
            float x = a[lo], y = a[mid], z = a[hi];
            float pivot = x > y ? (y > z ? y : (x > z ? z : x)) : (x > z ? x : (y > z ? z : y));
            int i = lo, j = hi;
            while (i <= j)
            {
                while (a[i] > pivot) i++;
                while (a[j] < pivot) j--;
                if (i <= j) { (a[i], a[j]) = (a[j], a[i]); i++; j--; }
            }
            if (r <= j) hi = j;
            else if (r >= i) lo = i;
            else return a[r];
        }
        return a[r];
    }

    /// <summary>The loss of the last Forward against x (see <see cref="SaeLoss"/>).</summary>
    public SaeLoss Loss(ReadOnlySpan<float> x, int N, SaeActivations a, float l1Coefficient)
    {
        int d = Config.DIn, s = Config.DSae;
        double se = 0;
        var xhat = a.Reconstruction.AsSpan(0, N * d);
        for (int i = 0; i < N * d; i++) { double e = xhat[i] - x[i]; se += e * e; }
        double sparsity = 0;
        if (Config.Architecture == SaeArchitecture.Relu)
        {
            PenaltyFactors(N, a);
            sparsity = TensorPrimitives.Dot(a.DecoderNorms, a.FeatureSums);
        }
        return new SaeLoss(se / N, sparsity / N, Config.Architecture == SaeArchitecture.Relu ? l1Coefficient : 0);
    }

    // ---------------------------------------------------------------- backward

    /// <summary>
    /// The gradient of L = (1/N) Σ_n ‖x̂_n − x_n‖² + λ (1/N) Σ_n Σ_i f_ni ‖W_dec,i‖ (λ only for Relu) with respect to every
    /// parameter, from the activations of the last Forward(x). Overwrites <see cref="Gradients"/>.
    /// </summary>
    public void Backward(ReadOnlySpan<float> x, int N, SaeActivations a, float l1Coefficient)
    {
        int d = Config.DIn, s = Config.DSae;
        CheckRows(x, N, a);
        var mm = Kernels.MatMul;
        Array.Clear(Gradients);
        // L_mse = (1/N) Σ (x̂ − x)²  ⇒  dx̂ = 2(x̂ − x)/N
        var dxhat = a.DReconstruction.AsSpan(0, N * d);
        TensorPrimitives.Subtract(a.Reconstruction.AsSpan(0, N * d), x[..(N * d)], dxhat);
        TensorPrimitives.Multiply(dxhat, 2f / N, dxhat);

        // x̂ = f·W_dec + b_dec  ⇒  dW_dec = fᵀ·dx̂,  db_dec = Σ_n dx̂_n,  df = dx̂·W_decᵀ
        mm.TN(new ReadOnlySpan2D<float>(a.Features, 0, N, s, 0), new ReadOnlySpan2D<float>(a.DReconstruction, 0, N, d, 0), new Span2D<float>(Gradients, _wDec, s, d, 0), false);
        Kernels.SumRows(dxhat, DBDec, N, d);
        mm.NT(new ReadOnlySpan2D<float>(a.DReconstruction, 0, N, d, 0), new ReadOnlySpan2D<float>(Parameters, _wDec, s, d, 0), new Span2D<float>(a.DFeatures, 0, N, s, 0), false);
        var df = a.DFeatures.AsSpan(0, N * s);
        var f = a.Features.AsSpan(0, N * s);

        if (Config.Architecture == SaeArchitecture.Relu && l1Coefficient != 0)
        {
            // L_sparse = (λ/N) Σ_n Σ_i f_ni ‖W_dec,i‖  ⇒  df_ni += (λ/N) ‖W_dec,i‖,   dW_dec,i += (λ/N) (Σ_n f_ni) W_dec,i / ‖W_dec,i‖
            // (row by row over f and df, so both are read contiguously)
            PenaltyFactors(N, a);
            var norms = a.DecoderNorms.AsSpan(0, s);
            float w = l1Coefficient / N;
            for (int n = 0; n < N; n++) TensorPrimitives.MultiplyAdd(norms, w, df.Slice(n * s, s), df.Slice(n * s, s));
            var wDec = WDec;
            var dwDec = DWDec;
            for (int i = 0; i < s; i++)
                if (norms[i] > 0) TensorPrimitives.MultiplyAdd(wDec.Slice(i * d, d), w * a.FeatureSums[i] / norms[i], dwDec.Slice(i * d, d), dwDec.Slice(i * d, d));
        }

        // f = σ(pre): ReLU (and TopK) pass the gradient where f > 0, block it elsewhere ⇒ dpre = df ⊙ [f > 0] (in place in df)
        for (int i = 0; i < N * s; i++) if (!(f[i] > 0)) df[i] = 0;

        // pre = xc·W_enc + b_enc  ⇒  dW_enc = xcᵀ·dpre,  db_enc = Σ_n dpre_n,  dxc = dpre·W_encᵀ
        mm.TN(new ReadOnlySpan2D<float>(a.Centered, 0, N, d, 0), new ReadOnlySpan2D<float>(a.DFeatures, 0, N, s, 0), new Span2D<float>(Gradients, _wEnc, d, s, 0), false);
        Kernels.SumRows(df, DBEnc, N, s);
        mm.NT(new ReadOnlySpan2D<float>(a.DFeatures, 0, N, s, 0), new ReadOnlySpan2D<float>(Parameters, _wEnc, d, s, 0), new Span2D<float>(a.DCentered, 0, N, d, 0), false);

        // xc = x − b_dec  ⇒  db_dec −= Σ_n dxc_n
        var dxc = a.DCentered.AsSpan(0, N * d);
        var dbDec = DBDec;
        for (int n = 0; n < N; n++) TensorPrimitives.Subtract(dbDec, dxc.Slice(n * d, d), dbDec);
    }

    // a.DecoderNorms[i] = ‖W_dec,i‖, a.FeatureSums[i] = Σ_n f_ni over the last Forward's N rows
    private void PenaltyFactors(int N, SaeActivations a)
    {
        int d = Config.DIn, s = Config.DSae;
        var wDec = WDec;
        for (int i = 0; i < s; i++) a.DecoderNorms[i] = TensorPrimitives.Norm(wDec.Slice(i * d, d));
        var sums = a.FeatureSums.AsSpan(0, s);
        sums.Clear();
        for (int n = 0; n < N; n++) TensorPrimitives.Add(sums, a.Features.AsSpan(n * s, s), sums);
    }

    /// <summary>TopK keeps W_dec's rows at unit norm (Gao et al. 2024), applied after every update.</summary>
    public void NormaliseDecoder()
    {
        int d = Config.DIn;
        var wDec = WDec;
        for (int i = 0; i < Config.DSae; i++)
        {
            var row = wDec.Slice(i * d, d);
            float norm = TensorPrimitives.Norm(row);
            if (norm > 0) TensorPrimitives.Multiply(row, 1f / norm, row);
        }
    }

    /// <summary>
    /// The same SAE for activations scaled by 1/scale: trained on scale·x, it reads raw x with W_enc·scale, b_dec/scale and
    /// writes x̂/scale with W_dec/scale (pre = (scale·x − b)·W + c = (x − b/scale)·(scale·W) + c). Features are unchanged.
    /// </summary>
    public SparseAutoencoder Rescaled(float scale)
    {
        var r = new SparseAutoencoder(Config, Kernels);
        Parameters.CopyTo(r.Parameters, 0);
        TensorPrimitives.Multiply(r.WEnc, scale, r.WEnc);
        TensorPrimitives.Multiply(r.WDec, 1f / scale, r.WDec);
        TensorPrimitives.Multiply(r.BDec, 1f / scale, r.BDec);
        return r;
    }

    private void CheckRows(ReadOnlySpan<float> x, int N, SaeActivations a)
    {
        if (N > a.Rows) throw new ArgumentException($"{N} rows but the activations hold {a.Rows}");
        if (x.Length < N * Config.DIn) throw new ArgumentException($"x holds {x.Length} floats, fewer than {N} × d_in {Config.DIn}");
    }
}
