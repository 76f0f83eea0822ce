using MiniGpt.Model;

namespace MiniGpt.Circuits;

/// <summary>Which input of the later head reads the earlier head's output (Elhage et al. 2021, "Composition").</summary>
public enum CompositionKind { Q, K, V }

/// <summary>
/// Q-, K- and V-composition scores between every head (l1, h1) and every head (l2, h2) of a later layer,
/// indexed [l1, h1, l2, h2] as TransformerLens's <c>all_composition_scores</c> (entries with l1 ≥ l2 are 0).
/// </summary>
public sealed class CompositionScores
{
    public int NLayers { get; }
    public int NHeads { get; }
    /// <summary>Number of Gaussian draws averaged for each baseline.</summary>
    public int BaselineSamples { get; }

    private readonly double[][,,,] _raw;
    private readonly double[] _baseline;

    internal CompositionScores(int layers, int heads, int samples, double[][,,,] raw, double[] baseline)
    {
        NLayers = layers; NHeads = heads; BaselineSamples = samples;
        _raw = raw; _baseline = baseline;
    }

    /// <summary>The score as TransformerLens computes it, ‖L·R‖_F / (‖L‖_F·‖R‖_F); 0 when l1 ≥ l2.</summary>
    public double Raw(CompositionKind kind, int l1, int h1, int l2, int h2) => _raw[(int)kind][l1, h1, l2, h2];

    /// <summary>The expected score of random matrices with the same shapes and ranks (see <see cref="Composition.RandomBaseline"/>).</summary>
    public double Baseline(CompositionKind kind) => _baseline[(int)kind];

    /// <summary>Raw − baseline, as the framework paper plots it; 0 when l1 ≥ l2.</summary>
    public double BaselineSubtracted(CompositionKind kind, int l1, int h1, int l2, int h2) =>
        l1 < l2 ? Raw(kind, l1, h1, l2, h2) - Baseline(kind) : 0;

    /// <summary>A copy of all raw scores of one kind, [n_layers, n_heads, n_layers, n_heads].</summary>
    public double[,,,] RawTensor(CompositionKind kind) => (double[,,,])_raw[(int)kind].Clone();

    /// <summary>A copy of all baseline-subtracted scores of one kind (0 where l1 ≥ l2).</summary>
    public double[,,,] BaselineSubtractedTensor(CompositionKind kind)
    {
        var t = RawTensor(kind);
        double b = Baseline(kind);
        for (int l1 = 0; l1 < NLayers; l1++)
            for (int l2 = l1 + 1; l2 < NLayers; l2++)
                for (int h1 = 0; h1 < NHeads; h1++)
                    for (int h2 = 0; h2 < NHeads; h2++) t[l1, h1, l2, h2] -= b;
        return t;
    }
}

/// <summary>
/// Composition scores (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits",
/// section "Virtual Attention Heads"/"Composition"), defined as TransformerLens does
/// (HookedTransformer.all_composition_scores and utils.composition_scores):
///
///   score(L, R) = ‖L·R‖_F / (‖L‖_F·‖R‖_F)
///
/// with L = W_OV[l1, h1] = W_V·W_O [d_model, d_model] of the earlier head (TL's <c>left = self.OV</c>), and
///   Q-composition: R = W_QK[l2, h2] = W_Q·W_Kᵀ          (TL: right = self.QK)
///   K-composition: R = W_QK[l2, h2]ᵀ = W_K·W_Qᵀ         (TL: right = self.QK.T)
///   V-composition: R = W_OV[l2, h2] = W_V·W_O           (TL: right = self.OV)
/// Orientation, in the row-vector convention: the earlier head writes y·W_OV into the residual stream;
/// the later head's query reads it as (y·W_OV)·W_QK·kᵀ (so the product is W_OV·W_QK), its key as
/// q·W_QK·(y·W_OV)ᵀ = y·W_OV·W_QKᵀ·qᵀ (W_OV·W_QKᵀ) and its value as y·W_OV·W_OV' (W_OV·W_OV').
/// TL collapses the factors first (L → S·Vᵀ, R → U·S), which changes no Frobenius norm; here the
/// norms are taken through the factored product (FactoredMatrix.FrobeniusNorm), which is the same
/// number. By submultiplicativity of ‖·‖_F the score is in [0, 1]. Scores are of the weights as
/// stored; for a LayerNorm model fold the LayerNorm first, as TL's from_pretrained does.
///
/// Baseline: the paper subtracts the score expected of random matrices of the same shapes and ranks.
/// We estimate it by Monte Carlo: L = A₁·B₁ and R = A₂·B₂ with A [d_model, r], B [r, d_model] of i.i.d.
/// N(0, 1) entries (r = d_head; the score is scale-invariant, so the variance does not matter), averaged
/// over <c>samples</c> draws from a fixed seed (deterministic). Because the Gaussian factors are invariant
/// under rotation and transposition, the Q, K and V baselines have the same expectation; each is
/// estimated from the same draws with its own R orientation, so Q and V coincide exactly and K agrees
/// with them within Monte Carlo error (about 1 % with 50 draws at d_model 64).
/// </summary>
public static class Composition
{
    /// <summary>‖L·R‖_F / (‖L‖_F·‖R‖_F), through the factors; 0 if either matrix is 0.</summary>
    public static double Score(FactoredMatrix left, FactoredMatrix right)
    {
        double den = left.FrobeniusNorm * right.FrobeniusNorm;
        return den == 0 ? 0 : FactoredMatrix.ProductFrobeniusNorm(left, right) / den;
    }

    /// <summary>The later head's matrix R for a kind of composition (see the class comment).</summary>
    public static FactoredMatrix Right(WeightCircuits c, CompositionKind kind, int l, int h) => kind switch
    {
        CompositionKind.Q => c.QK(l, h),
        CompositionKind.K => c.QK(l, h).Transpose(),
        CompositionKind.V => c.OV(l, h),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>
    /// Mean composition score of random L [d, d] of rank leftRank and R [d, d] of rank rightRank
    /// (Gaussian factors; for K, R is transposed as in the real score), over <paramref name="samples"/>
    /// seeded draws.
    /// </summary>
    public static double RandomBaseline(int dModel, int leftRank, int rightRank, CompositionKind kind, int samples = 50, ulong seed = 1) =>
        RandomBaselines(dModel, leftRank, rightRank, samples, seed)[(int)kind];

    /// <summary>The Q, K and V baselines (indexed by <see cref="CompositionKind"/>) from the same draws.</summary>
    public static double[] RandomBaselines(int dModel, int leftRank, int rightRank, int samples = 50, ulong seed = 1)
    {
        if (samples < 1) throw new ArgumentOutOfRangeException(nameof(samples), "need at least one sample");
        var rng = new Rng(seed);
        var sum = new double[3];
        for (int s = 0; s < samples; s++)
        {
            var left = new FactoredMatrix(Matrix.RandomNormal(dModel, leftRank, ref rng), Matrix.RandomNormal(leftRank, dModel, ref rng));
            var right = new FactoredMatrix(Matrix.RandomNormal(dModel, rightRank, ref rng), Matrix.RandomNormal(rightRank, dModel, ref rng));
            double q = Score(left, right);
            sum[(int)CompositionKind.Q] += q;
            sum[(int)CompositionKind.K] += Score(left, right.Transpose());
            sum[(int)CompositionKind.V] += q; // R has the same distribution for Q and V: the same draw
        }
        for (int k = 0; k < 3; k++) sum[k] /= samples;
        return sum;
    }

    public static CompositionScores Compute(GptModel model, int baselineSamples = 50, ulong seed = 1) =>
        Compute(new WeightCircuits(model), baselineSamples, seed);

    /// <summary>All three kinds for every pair of heads in different layers (earlier first), with baselines.</summary>
    public static CompositionScores Compute(WeightCircuits c, int baselineSamples = 50, ulong seed = 1)
    {
        int L = c.NLayers, H = c.NHeads;
        var kinds = new[] { CompositionKind.Q, CompositionKind.K, CompositionKind.V };
        var raw = new double[kinds.Length][,,,];
        var baseline = L > 1 ? RandomBaselines(c.Config.DModel, c.Config.DHead, c.Config.DHead, baselineSamples, seed) : new double[kinds.Length];
        // the factored matrices of every head, built once
        var ov = new FactoredMatrix[L, H];
        var qk = new FactoredMatrix[L, H];
        var qkT = new FactoredMatrix[L, H];
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++)
            {
                ov[l, h] = c.OV(l, h);
                qk[l, h] = c.QK(l, h);
                qkT[l, h] = qk[l, h].Transpose();
            }
        foreach (var kind in kinds)
        {
            var t = new double[L, H, L, H];
            var right = kind switch { CompositionKind.Q => qk, CompositionKind.K => qkT, _ => ov };
            for (int l1 = 0; l1 < L; l1++)
                for (int h1 = 0; h1 < H; h1++)
                    for (int l2 = l1 + 1; l2 < L; l2++)
                        for (int h2 = 0; h2 < H; h2++)
                            t[l1, h1, l2, h2] = Score(ov[l1, h1], right[l2, h2]);
            raw[(int)kind] = t;
        }
        return new CompositionScores(L, H, baselineSamples, raw, baseline);
    }
}
