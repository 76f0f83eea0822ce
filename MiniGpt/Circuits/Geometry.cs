using System.Numerics.Tensors;
using MiniGpt.Model;

namespace MiniGpt.Circuits;

/// <summary>
/// Pairwise cosine similarities of a set of vectors: their mean and standard deviation, the standard
/// deviation 1/√d expected of independent random directions in d dimensions (for two independent
/// isotropic vectors, cos θ has mean 0 and variance 1/d), and a histogram: Histogram[i] is the fraction of
/// pairs with a cosine in bin i of <see cref="HistMin"/> … <see cref="HistMax"/> (the observed range, in
/// equal bins; the maximum falls in the last bin).
/// </summary>
public sealed record CosineStats(double Mean, double Std, double ExpectedStd, double[] Histogram, double HistMin, double HistMax);

/// <summary>Geometry of representations: near-orthogonality of embeddings and the coding rate of the residual stream.</summary>
public static class Geometry
{
    /// <summary>Cosines between every pair of distinct rows of W_E [d_vocab, d_model] (see <see cref="Cosines"/>).</summary>
    public static CosineStats EmbeddingCosines(GptModel model, int bins = 40) =>
        Cosines(model.Params["embed.W_E"].Span, model.Config.DVocab, model.Config.DModel, bins);

    /// <summary>
    /// Cosines between every pair i &lt; j of the rows of a row-major [n, d] matrix; rows of norm 0 are left
    /// out (their cosine is undefined). With more than <paramref name="maxRows"/> rows, a uniform random
    /// subset of maxRows rows (seeded) is used, which keeps the cost at maxRows²·d/2.
    /// </summary>
    public static CosineStats Cosines(ReadOnlySpan<float> rows, int n, int d, int bins = 40, int maxRows = 4096, ulong seed = 1)
    {
        if (rows.Length != n * d) throw new ArgumentException($"expected {n}×{d} = {n * d} values, got {rows.Length}");
        if (bins < 1) throw new ArgumentException($"bins must be ≥ 1, got {bins}");
        var pick = Enumerable.Range(0, n).ToArray();
        if (n > maxRows)
        {
            var rng = new Rng(seed);
            for (int i = 0; i < maxRows; i++) { int j = i + rng.NextInt(n - i); (pick[i], pick[j]) = (pick[j], pick[i]); }
            pick = pick[..maxRows];
            Array.Sort(pick);
        }
        // unit rows (float, for TensorPrimitives.Dot), skipping zero rows
        var unit = new List<float[]>();
        foreach (int i in pick)
        {
            var r = rows.Slice(i * d, d);
            double norm = 0;
            foreach (float f in r) norm += (double)f * f;
            if (norm == 0) continue;
            var u = new float[d];
            float inv = (float)(1 / Math.Sqrt(norm));
            for (int k = 0; k < d; k++) u[k] = r[k] * inv;
            unit.Add(u);
        }
        int m = unit.Count;
        long pairs = (long)m * (m - 1) / 2;
        double expected = 1 / Math.Sqrt(d);
        if (pairs == 0) return new CosineStats(double.NaN, double.NaN, expected, new double[bins], 0, 0);
        var cos = new float[pairs];
        long idx = 0;
        for (int i = 0; i < m; i++)
            for (int j = i + 1; j < m; j++)
                cos[idx++] = Math.Clamp(TensorPrimitives.Dot(unit[i], unit[j]), -1f, 1f);
        double sum = 0, min = double.PositiveInfinity, max = double.NegativeInfinity;
        foreach (float c in cos) { sum += c; min = Math.Min(min, c); max = Math.Max(max, c); }
        double mean = sum / pairs, ss = 0;
        foreach (float c in cos) ss += (c - mean) * (c - mean);
        var hist = new double[bins];
        double width = (max - min) / bins;
        foreach (float c in cos)
        {
            int b = width > 0 ? (int)((c - min) / width) : 0;
            hist[Math.Clamp(b, 0, bins - 1)]++;
        }
        for (int b = 0; b < bins; b++) hist[b] /= pairs;
        return new CosineStats(mean, Math.Sqrt(ss / pairs), expected, hist, min, max);
    }

    /// <summary>
    /// The coding rate of Yu et al. 2020 ("Learning Diverse and Discriminative Representations via the
    /// Principle of Maximal Coding Rate Reduction", MCR²; also the compression term of Yu et al. 2023's CRATE),
    /// R(Z, ε) = ½·logdet(I_d + d/(n·ε²)·ZᵀZ), in nats, for Z [n, d] row-major (rows are tokens): the number
    /// of nats needed to code the n vectors up to distortion ε. By the determinant identity
    /// det(I_d + c·ZᵀZ) = det(I_n + c·Z·Zᵀ), the smaller of the two Gram matrices is formed (d×d when d ≤ n,
    /// else n×n), in double, and its log-determinant taken from a Cholesky factorisation (it is symmetric
    /// positive definite: identity plus a Gram matrix).
    /// </summary>
    public static double CodingRate(ReadOnlySpan<float> z, int n, int d, double eps = 0.5)
    {
        if (z.Length != n * d) throw new ArgumentException($"expected {n}×{d} = {n * d} values, got {z.Length}");
        if (n < 1 || d < 1) throw new ArgumentException($"Z must have at least one row and one column, got {n}×{d}");
        if (!(eps > 0)) throw new ArgumentException($"eps must be > 0, got {eps}");
        double c = d / (n * eps * eps);
        int m = Math.Min(n, d);
        var g = new double[m * m];
        if (d <= n)
        {
            // I_d + c·ZᵀZ: accumulate row by row
            var zr = new double[d];
            for (int r = 0; r < n; r++)
            {
                for (int k = 0; k < d; k++) zr[k] = z[r * d + k];
                for (int i = 0; i < d; i++)
                {
                    double zi = zr[i];
                    if (zi == 0) continue;
                    for (int j = 0; j <= i; j++) g[i * m + j] += zi * zr[j];
                }
            }
        }
        else
        {
            // I_n + c·Z·Zᵀ
            for (int i = 0; i < n; i++)
                for (int j = 0; j <= i; j++)
                {
                    double s = 0;
                    for (int k = 0; k < d; k++) s += (double)z[i * d + k] * z[j * d + k];
                    g[i * m + j] = s;
                }
        }
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j <= i; j++) g[i * m + j] *= c;
            g[i * m + i] += 1;
        }
        return 0.5 * CholeskyLogDet(g, m);
    }

    /// <summary>
    /// The coding rate (<see cref="CodingRate"/>) of the residual stream of tokens [B, T], all B·T positions
    /// as the rows of Z: element 0 after the embedding (W_E[tok] + W_pos, or W_E[tok] alone with shortformer
    /// positions, i.e. blocks.0.hook_resid_pre), element l+1 after block l (blocks.{l}.hook_resid_post).
    /// Yu et al. normalise features to the unit sphere, which makes ε a distortion relative to the vectors'
    /// length; the raw residual stream's rate also grows with its norm, which grows with depth. So
    /// <paramref name="normalizeRows"/> true scales each row to unit norm first (zero rows stay zero); false
    /// (the default) takes the residual stream as it is.
    /// </summary>
    public static double[] ResidualCodingRates(GptModel model, int[] tokens, int B, int T, double eps = 0.5, bool normalizeRows = false)
    {
        var c = model.Config;
        int N = B * T, D = c.DModel;
        var cache = model.RunWithCache(tokens, B, T, n => n is "hook_embed" or "hook_pos_embed" || n.EndsWith(".hook_resid_post", StringComparison.Ordinal));
        var rates = new double[c.NLayers + 1];
        var x = cache["hook_embed"].Span.ToArray();
        if (!c.Shortformer)
        {
            var pos = cache["hook_pos_embed"].Span;
            for (int i = 0; i < x.Length; i++) x[i] += pos[i];
        }
        rates[0] = Rate(x);
        for (int l = 0; l < c.NLayers; l++) rates[l + 1] = Rate(cache[$"blocks.{l}.hook_resid_post"].Span.ToArray());
        return rates;

        double Rate(float[] z)
        {
            if (normalizeRows)
                for (int n = 0; n < N; n++)
                {
                    var r = z.AsSpan(n * D, D);
                    double norm = Math.Sqrt(TensorPrimitives.SumOfSquares(r));
                    if (norm > 0) TensorPrimitives.Multiply(r, (float)(1 / norm), r);
                }
            return CodingRate(z, N, D, eps);
        }
    }

    // log det of a symmetric positive definite matrix (lower triangle of a [m, m] row-major array, which is
    // overwritten by its Cholesky factor L): A = L·Lᵀ, log det A = 2·Σ log L_ii
    private static double CholeskyLogDet(double[] a, int m)
    {
        double logDet = 0;
        for (int j = 0; j < m; j++)
        {
            double s = a[j * m + j];
            for (int k = 0; k < j; k++) s -= a[j * m + k] * a[j * m + k];
            if (!(s > 0)) throw new InvalidOperationException($"the matrix is not positive definite (pivot {j} is {s:G3})");
            double ljj = Math.Sqrt(s);
            a[j * m + j] = ljj;
            logDet += 2 * Math.Log(ljj);
            for (int i = j + 1; i < m; i++)
            {
                double t = a[i * m + j];
                for (int k = 0; k < j; k++) t -= a[i * m + k] * a[j * m + k];
                a[i * m + j] = t / ljj;
            }
        }
        return logDet;
    }
}
