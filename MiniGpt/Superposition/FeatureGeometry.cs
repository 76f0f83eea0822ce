namespace MiniGpt.Superposition;

/// <summary>
/// What a toy model's W [m, n] says about each feature, with W_i ∈ ℝᵐ the i-th column and Ŵ_i = W_i/‖W_i‖
/// (Elhage et al. 2022):
///   Norm[i]            ‖W_i‖: ≈ 1 when feature i is represented, ≈ 0 when it is dropped;
///   Superposition[i]   Σ_{j≠i} (Ŵ_i·W_j)²: how much the other features project onto i's direction
///                      (0: i has a dimension of its own; the colour of the paper's feature-norm bars);
///   Dimensionality[i]  D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)²  (the sum includes j = i): the fraction of a dimension
///                      feature i gets, 1 for a dedicated dimension, 1/2 for an antipodal pair, 2/5 for a
///                      pentagon's vertex, 0 for a dropped feature (0/0 taken as 0);
///   Gram               WᵀW [n, n], row-major;
///   DimensionsPerFeature  m / ‖W‖_F² (the paper's D*: hidden dimensions per feature learned).
/// A feature counts as represented when ‖W_i‖ &gt; <see cref="RepresentedNorm"/> (the paper reads represented
/// features off the norm bars, where the gap between ≈ 1 and ≈ 0 is wide).
/// </summary>
public sealed class FeatureGeometry
{
    public const double RepresentedNorm = 0.5;

    public int N { get; }
    public int M { get; }
    public double[] Norms { get; }
    public double[] Superposition { get; }
    public double[] Dimensionality { get; }
    public double[] Gram { get; }
    public double DimensionsPerFeature { get; }
    public int[] Represented { get; }

    public FeatureGeometry(ReadOnlySpan<float> w, int m, int n)
    {
        if (w.Length != m * n) throw new ArgumentException($"W should be {m}×{n} = {m * n} values, got {w.Length}");
        M = m; N = n;
        Gram = new double[n * n];
        // WᵀW[i, j] = Σ_k W[k, i]·W[k, j], in double
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int k = 0; k < m; k++) s += (double)w[k * n + i] * w[k * n + j];
                Gram[i * n + j] = s;
            }
        Norms = new double[n];
        Superposition = new double[n];
        Dimensionality = new double[n];
        double frob = 0;
        var rep = new List<int>();
        for (int i = 0; i < n; i++)
        {
            double sq = Gram[i * n + i];
            frob += sq;
            Norms[i] = Math.Sqrt(sq);
            if (Norms[i] > RepresentedNorm) rep.Add(i);
            if (sq == 0) continue;
            // (Ŵ_i·W_j)² = (W_i·W_j)² / ‖W_i‖²
            double all = 0;
            for (int j = 0; j < n; j++) all += Gram[i * n + j] * Gram[i * n + j] / sq;
            Superposition[i] = all - sq; // the j = i term is ‖W_i‖²
            Dimensionality[i] = sq / all;
        }
        DimensionsPerFeature = frob > 0 ? m / frob : double.NaN;
        Represented = rep.ToArray();
    }

    public static FeatureGeometry Of(ToyModel model) => new(model.W, model.M, model.N);

    /// <summary>Column i of W (feature i's direction) [m].</summary>
    public static double[] Column(ReadOnlySpan<float> w, int m, int n, int i)
    {
        var c = new double[m];
        for (int k = 0; k < m; k++) c[k] = w[k * n + i];
        return c;
    }
}

/// <summary>Feature directions of an m = 2 model as angles in the plane (the paper's pentagon pictures).</summary>
public static class PlaneAngles
{
    /// <summary>atan2(W[1, i], W[0, i]) of every feature, in degrees in [0, 360).</summary>
    public static double[] Of(ReadOnlySpan<float> w, int n)
    {
        if (w.Length != 2 * n) throw new ArgumentException($"an m = 2 model's W has {2 * n} values, got {w.Length}");
        var a = new double[n];
        for (int i = 0; i < n; i++)
        {
            double deg = Math.Atan2(w[n + i], w[i]) * 180 / Math.PI;
            a[i] = deg < 0 ? deg + 360 : deg;
        }
        return a;
    }

    /// <summary>
    /// The angles between neighbouring directions of the given features, going round the circle (so they sum
    /// to 360°): for k features in a regular polygon each gap is 360°/k (72° for a pentagon).
    /// </summary>
    public static double[] NeighbourGaps(double[] angles, int[] features)
    {
        if (features.Length < 2) return [];
        var sorted = features.Select(i => angles[i]).Order().ToArray();
        var gaps = new double[sorted.Length];
        for (int i = 0; i < sorted.Length; i++)
            gaps[i] = i + 1 < sorted.Length ? sorted[i + 1] - sorted[i] : sorted[0] + 360 - sorted[i];
        return gaps;
    }
}
