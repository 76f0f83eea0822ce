using MiniGpt.Circuits;

namespace MiniGpt.Superposition;

/// <summary>
/// How close to orthogonal the k represented feature directions of a toy model are, against k random
/// directions in the same m dimensions. Three yardsticks for the pairwise cosines cos θ_ij = Ŵ_i·Ŵ_j:
///   mean |cos| and max |cos|;
///   mean cos²: 1/m for independent isotropic directions (E[cos²] = 1/m), 0 for orthogonal ones, and never
///   below the tight-frame floor (k/m − 1)/(k − 1) when k &gt; m, since Σ_{i,j} cos² = ‖Σ_i Ŵ_iŴ_iᵀ‖_F² ≥ k²/m
///   (the frame potential, equal exactly for a tight frame such as the regular pentagon in the plane: 0.375);
///   the standard deviation of the cosines against 1/√m (<see cref="Geometry.Cosines"/>, the same test the
///   circuits report applies to token embeddings).
/// The random baseline averages <see cref="Trials"/> seeded draws of k standard normal vectors.
/// </summary>
public sealed record OrthogonalityStats(
    int Features, int Dims,
    double MeanAbsCos, double MaxAbsCos, double MeanSqCos, double CosMean, double CosStd,
    double RandomMeanAbsCos, double RandomMaxAbsCos, double RandomMeanSqCos, double RandomCosStd,
    double ExpectedStd, double TightFrameFloor)
{
    public const int Trials = 200;

    /// <summary>The represented features of a model (<see cref="FeatureGeometry.Represented"/>); null when fewer than two are.</summary>
    public static OrthogonalityStats? Of(ToyModel model, FeatureGeometry g, ulong seed)
    {
        int k = g.Represented.Length, m = model.M;
        if (k < 2) return null;
        // the represented columns of W as the rows of a [k, m] matrix
        var rows = new float[k * m];
        for (int r = 0; r < k; r++)
            for (int d = 0; d < m; d++) rows[r * m + d] = model.W[d * model.N + g.Represented[r]];
        var (meanAbs, maxAbs, meanSq) = Pairwise(rows, k, m);
        var stats = Geometry.Cosines(rows, k, m, bins: 20);

        var rng = new Rng(seed);
        var rnd = new float[k * m];
        double rAbs = 0, rMax = 0, rSq = 0, rStd = 0;
        for (int t = 0; t < Trials; t++)
        {
            for (int i = 0; i < rnd.Length; i++) rnd[i] = (float)rng.NextNormal();
            var (a, mx, sq) = Pairwise(rnd, k, m);
            rAbs += a; rMax += mx; rSq += sq;
            rStd += Geometry.Cosines(rnd, k, m, bins: 1).Std;
        }
        double floor = k > m ? ((double)k / m - 1) / (k - 1) : 0;
        return new OrthogonalityStats(k, m, meanAbs, maxAbs, meanSq, stats.Mean, stats.Std,
            rAbs / Trials, rMax / Trials, rSq / Trials, rStd / Trials, stats.ExpectedStd, floor);
    }

    // mean |cos|, max |cos| and mean cos² over the pairs i < j of the rows of [k, m]
    private static (double MeanAbs, double MaxAbs, double MeanSq) Pairwise(float[] rows, int k, int m)
    {
        var norm = new double[k];
        for (int i = 0; i < k; i++)
        {
            double s = 0;
            for (int d = 0; d < m; d++) s += (double)rows[i * m + d] * rows[i * m + d];
            norm[i] = Math.Sqrt(s);
        }
        double sumAbs = 0, max = 0, sumSq = 0;
        int pairs = 0;
        for (int i = 0; i < k; i++)
            for (int j = i + 1; j < k; j++)
            {
                double dot = 0;
                for (int d = 0; d < m; d++) dot += (double)rows[i * m + d] * rows[j * m + d];
                double c = norm[i] > 0 && norm[j] > 0 ? dot / (norm[i] * norm[j]) : 0;
                sumAbs += Math.Abs(c); sumSq += c * c; max = Math.Max(max, Math.Abs(c));
                pairs++;
            }
        return (sumAbs / pairs, max, sumSq / pairs);
    }
}
