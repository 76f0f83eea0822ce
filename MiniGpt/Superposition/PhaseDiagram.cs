namespace MiniGpt.Superposition;

/// <summary>
/// What an n = 2, m = 1 model does with its one dimension (Elhage et al. 2022, section "The Phase Change"):
/// feature 0 has importance 1, feature 1 (the paper's "extra feature") a relative importance r. Read off
/// the norms w_i = |W_i| (represented when &gt; <see cref="FeatureGeometry.RepresentedNorm"/>) and the sign of W_0·W_1:
/// </summary>
public enum Phase
{
    /// <summary>only feature 0 is represented: the extra feature is not learned.</summary>
    FirstOnly,
    /// <summary>only feature 1 is represented: the extra feature takes the dimension (a dedicated dimension) and feature 0 is dropped.</summary>
    SecondOnly,
    /// <summary>both are represented, pointing opposite ways (W_0·W_1 &lt; 0): antipodal superposition, the paper's third phase.</summary>
    Superposition,
    /// <summary>both represented, same side (not a phase of the paper; the ReLU cannot tell them apart).</summary>
    BothSameSide,
    /// <summary>neither feature is represented.</summary>
    Neither,
}

/// <summary>One cell of the diagram: the trained model's weights, biases and loss, and its phase.</summary>
public sealed record PhaseCell(double Sparsity, double RelativeImportance, float[] W, float[] B, double Loss, Phase Phase)
{
    public static Phase Classify(ReadOnlySpan<float> w)
    {
        bool a = Math.Abs(w[0]) > FeatureGeometry.RepresentedNorm, b = Math.Abs(w[1]) > FeatureGeometry.RepresentedNorm;
        return (a, b) switch
        {
            (true, false) => Phase.FirstOnly,
            (false, true) => Phase.SecondOnly,
            (true, true) => w[0] * w[1] < 0 ? Phase.Superposition : Phase.BothSameSide,
            _ => Phase.Neither,
        };
    }
}

/// <summary>
/// The two-feature phase diagram over feature density 1 − S (rows, from 1 down to <see cref="MinDensity"/>,
/// log-spaced) × relative importance r of the extra feature (columns, <see cref="MinRatio"/> … <see cref="MaxRatio"/>,
/// log-spaced) — the axes of the paper's figure (density 1 … 0.01, importance 0.1 … 10). Cells[row·Cols + col].
/// </summary>
public sealed record PhaseDiagram(double[] Sparsities, double[] Ratios, PhaseCell[] Cells)
{
    public const double MinDensity = 0.01, MinRatio = 0.1, MaxRatio = 10;

    public int Rows => Sparsities.Length;
    public int Cols => Ratios.Length;
    public PhaseCell this[int row, int col] => Cells[row * Cols + col];

    /// <summary>The grid's axes for <paramref name="size"/> points a side (size ≥ 2): S = 1 − 0.01^(k/(size−1)), r = 0.1·100^(k/(size−1)).</summary>
    public static (double[] Sparsities, double[] Ratios) Axes(int size)
    {
        if (size < 2) throw new ArgumentException($"a phase diagram needs at least 2 points a side, got {size}");
        var s = new double[size];
        var r = new double[size];
        for (int k = 0; k < size; k++)
        {
            double f = (double)k / (size - 1);
            s[k] = k == 0 ? 0 : 1 - Math.Pow(MinDensity, f);
            r[k] = MinRatio * Math.Pow(MaxRatio / MinRatio, f);
        }
        return (s, r);
    }

    /// <summary>The cells' jobs, row by row: importance [1, r], seeds derived from seed and the cell's index.</summary>
    public static List<ToyJob> Jobs(double[] sparsities, double[] ratios, ulong seed)
    {
        var jobs = new List<ToyJob>();
        for (int i = 0; i < sparsities.Length; i++)
            for (int j = 0; j < ratios.Length; j++)
                jobs.Add(new ToyJob(2, 1, [1f, (float)ratios[j]], sparsities[i], SuperpositionExperiment.SeedFor(seed, 2_000_000 + i * ratios.Length + j)));
        return jobs;
    }

    public static PhaseDiagram From(double[] sparsities, double[] ratios, ReadOnlySpan<TrainedToy> trained)
    {
        var cells = new PhaseCell[sparsities.Length * ratios.Length];
        for (int c = 0; c < cells.Length; c++)
        {
            var t = trained[c];
            cells[c] = new PhaseCell(sparsities[c / ratios.Length], ratios[c % ratios.Length], (float[])t.Model.W.Clone(), (float[])t.Model.B.Clone(),
                t.EvalLoss, PhaseCell.Classify(t.Model.W));
        }
        return new PhaseDiagram(sparsities, ratios, cells);
    }

    /// <summary>How many cells fall in each phase.</summary>
    public Dictionary<Phase, int> Counts()
    {
        var d = Enum.GetValues<Phase>().ToDictionary(p => p, _ => 0);
        foreach (var c in Cells) d[c.Phase]++;
        return d;
    }
}

/// <summary>
/// The phase an n = 2, m = 1 model should reach, from the expected losses of the three candidate solutions
/// (a simplified form of the paper's theoretical diagram), with density p = 1 − S, importances 1 and r, and
/// each active feature uniform on [0, 1] (E[x] = p/2, E[x²] = p/3):
///   feature 0 only (W = [1, 0]; b_1 = p/2 predicts the mean of the dropped feature):  r·Var(x_1) = r·(p/3 − p²/4);
///   feature 1 only (W = [0, 1]):                                                      Var(x_0) = p/3 − p²/4;
///   antipodal (W = [1, −1], b = 0): x'_0 = ReLU(x_0 − x_1) is exact unless both features are active (p²),
///   when the error is min(x_0, x_1), E[min²] = 1/6:                                    (1 + r)·p²/6.
/// The phase is the candidate of least loss. Training can do a little better than these fixed solutions (it also
/// tunes the antipodal pair's norm and bias), so cells near a boundary may differ.
/// </summary>
public static class PhaseTheory
{
    public static (double FirstOnly, double SecondOnly, double Antipodal) Losses(double sparsity, double r)
    {
        double p = 1 - sparsity, v = p / 3 - p * p / 4;
        return (r * v, v, (1 + r) * p * p / 6);
    }

    public static Phase Predict(double sparsity, double r)
    {
        var (a, b, c) = Losses(sparsity, r);
        return c < Math.Min(a, b) ? Phase.Superposition : a <= b ? Phase.FirstOnly : Phase.SecondOnly;
    }
}
