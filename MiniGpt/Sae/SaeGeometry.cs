using System.Numerics.Tensors;
using MiniGpt.Circuits;

namespace MiniGpt.Sae;

/// <summary>
/// How the SAE's dictionary sits in activation space, against random directions (the seeds' near-orthogonality):
/// pairwise cosines of the unit decoder rows (mean, spread, and each feature's largest |cos| with any other, averaged),
/// the same for d_sae random Gaussian directions in d_in dimensions (whose cosines have spread ≈ 1/√d_in), and the
/// coding rate R = ½ logdet(I + d/(n ε²) ZᵀZ) of the unit directions (<see cref="Geometry.CodingRate"/>) for both.
/// More features than dimensions can only be packed nearly orthogonally: the comparison says whether training
/// spread them further apart than chance (lower max |cos|) or bunched them (higher).
/// </summary>
public sealed record SaeGeometryResult(CosineStats Decoder, CosineStats Random, double DecoderMaxAbsCos, double RandomMaxAbsCos,
    double DecoderCodingRate, double RandomCodingRate, int Features);

public static class SaeGeometry
{
    public static SaeGeometryResult Measure(SparseAutoencoder sae, IReadOnlyList<int>? alive = null, int maxRows = 2048, ulong seed = 1)
    {
        int d = sae.Config.DIn;
        var rows = (alive ?? Enumerable.Range(0, sae.Config.DSae).ToList()).Take(maxRows).ToList();
        int n = rows.Count;
        if (n < 2)
        {
            // fewer than two live features (e.g. an L1 penalty that killed them all): no pairs to measure
            var none = new CosineStats(double.NaN, double.NaN, 1 / Math.Sqrt(d), [], double.NaN, double.NaN);
            return new SaeGeometryResult(none, none, double.NaN, double.NaN, double.NaN, double.NaN, n);
        }
        var dec = new float[n * d];
        var wDec = sae.WDec;
        for (int r = 0; r < n; r++) wDec.Slice(rows[r] * d, d).CopyTo(dec.AsSpan(r * d, d));
        Normalise(dec, n, d);
        var rnd = new float[n * d];
        var rng = new Rng(seed);
        for (int i = 0; i < rnd.Length; i++) rnd[i] = (float)rng.NextNormal();
        Normalise(rnd, n, d);
        return new SaeGeometryResult(Geometry.Cosines(dec, n, d), Geometry.Cosines(rnd, n, d), MeanMaxAbsCos(dec, n, d), MeanMaxAbsCos(rnd, n, d),
            Geometry.CodingRate(dec, n, d), Geometry.CodingRate(rnd, n, d), n);
    }

    private static void Normalise(float[] m, int n, int d)
    {
        for (int r = 0; r < n; r++)
        {
            var row = m.AsSpan(r * d, d);
            float norm = TensorPrimitives.Norm(row);
            if (norm > 0) TensorPrimitives.Multiply(row, 1f / norm, row);
        }
    }

    // mean over rows of max_{j≠i} |cos(row i, row j)|: how close each direction's nearest neighbour is
    private static double MeanMaxAbsCos(float[] m, int n, int d)
    {
        if (n < 2) return double.NaN;
        double sum = 0;
        for (int i = 0; i < n; i++)
        {
            var a = m.AsSpan(i * d, d);
            double best = 0;
            for (int j = 0; j < n; j++)
                if (j != i) best = Math.Max(best, Math.Abs(TensorPrimitives.Dot(a, m.AsSpan(j * d, d))));
            sum += best;
        }
        return sum / n;
    }
}
