using System.Diagnostics;

namespace MiniGpt.Patching;

/// <summary>
/// One grid of patching results, row-major over Shape (e.g. [layer, head]), each cell the normalised metric
/// (m − m_corrupted)/(m_clean − m_corrupted): 0 = the corrupted run, 1 = the clean run. Method is "exact"
/// (activation patching: a forward pass per cell), "attribution" (one backward for every cell) or "path".
/// Raw holds the metric itself per cell (for attribution, m_corrupted + the first-order estimate).
/// </summary>
[DebuggerDisplay("{Name} {Method} [{string.Join(\", \", Shape)}] in {Seconds:0.000} s")]
public sealed record PatchGrid(string Name, string Method, string[] Axes, int[] Shape, double[] Values, double[] Raw,
    double Clean, double Corrupted, double Seconds)
{
    public double this[int i, int j] => Values[i * Shape[1] + j];
    public double this[int i, int j, int k] => Values[(i * Shape[1] + j) * Shape[2] + k];

    /// <summary>(m − corrupted)/(clean − corrupted); NaN when clean and corrupted give the same metric.</summary>
    public static double Normalise(double m, double clean, double corrupted) =>
        clean == corrupted ? double.NaN : (m - corrupted) / (clean - corrupted);

    /// <summary>The cell's indices along each axis.</summary>
    public int[] Index(int cell)
    {
        var ix = new int[Shape.Length];
        for (int a = Shape.Length - 1; a >= 0; a--) { ix[a] = cell % Shape[a]; cell /= Shape[a]; }
        return ix;
    }
}
