using System.Globalization;

namespace MiniGpt.Tensors;

/// <summary>
/// What a debugger line says about a tensor's values: min, max and mean of its finite values, and how many are NaN, +∞
/// and −∞ (attention scores hold −∞ above the diagonal on purpose; a NaN anywhere is a fault). The cost is bounded: at
/// most <see cref="MaxExamined"/> values are read, every stride-th one of a larger tensor, and the text says so.
/// </summary>
public readonly struct TensorStats
{
    /// <summary>Values read at most: 4 M floats, a few milliseconds, so that a watch window stays responsive on GPT-2's logits.</summary>
    public const int MaxExamined = 1 << 22;

    public int Total { get; }
    /// <summary>1: every value was read; k: every k-th (0, k, 2k, …).</summary>
    public int Stride { get; }
    public int Examined { get; }
    public int Finite { get; }
    public float Min { get; }
    public float Max { get; }
    public double Mean { get; }
    public int NaN { get; }
    public int PosInf { get; }
    public int NegInf { get; }

    public bool Sampled => Stride > 1;

    public TensorStats(ReadOnlySpan<float> s)
    {
        Total = s.Length;
        Stride = s.Length <= MaxExamined ? 1 : (int)((s.Length + (long)MaxExamined - 1) / MaxExamined);
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        double sum = 0;
        int examined = 0, finite = 0, nan = 0, pos = 0, neg = 0;
        for (int i = 0; i < s.Length; i += Stride)
        {
            float v = s[i];
            examined++;
            if (float.IsNaN(v)) nan++;
            else if (float.IsPositiveInfinity(v)) pos++;
            else if (float.IsNegativeInfinity(v)) neg++;
            else
            {
                finite++;
                sum += v;
                if (v < min) min = v;
                if (v > max) max = v;
            }
        }
        Examined = examined; Finite = finite; NaN = nan; PosInf = pos; NegInf = neg;
        Min = finite > 0 ? min : float.NaN;
        Max = finite > 0 ? max : float.NaN;
        Mean = finite > 0 ? sum / finite : double.NaN;
    }

    /// <summary>"min −0.5 max 2 mean 0.031 NaN 0 Inf 0", with "+Inf 1 −Inf 28" when there are some, and the sampling when sampled.</summary>
    public override string ToString()
    {
        if (Total == 0) return "empty";
        string inf = PosInf + NegInf == 0 ? "Inf 0" : $"+Inf {PosInf} −Inf {NegInf}";
        string values = Finite > 0 ? $"min {F(Min)} max {F(Max)} mean {F(Mean)}" : "no finite values";
        string sampled = Sampled ? $" (sampled: 1 in {Stride} of {Total.ToString("N0", CultureInfo.InvariantCulture)})" : "";
        return $"{values} NaN {NaN} {inf}{sampled}";
    }

    private static string F(double v) => v.ToString("G4", CultureInfo.InvariantCulture);
}
