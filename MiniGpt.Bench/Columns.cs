using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace MiniGpt.Bench;

/// <summary>Shared plumbing for a column computed as (work per operation) / (mean time per operation).</summary>
public abstract class ThroughputColumn : IColumn
{
    public abstract string Id { get; }
    public abstract string ColumnName { get; }
    public abstract string Legend { get; }

    /// <summary>Work units per operation for this case, or null if the column does not apply to it.</summary>
    protected abstract double? WorkPerOp(BenchmarkCase benchmarkCase);

    /// <summary>Scale from work per nanosecond to the displayed unit.</summary>
    protected abstract double PerNanosecondToUnit { get; }

    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;

    public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(b => WorkPerOp(b) != null);

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        if (WorkPerOp(benchmarkCase) is not double work) return "-";
        var meanNs = summary[benchmarkCase]?.ResultStatistics?.Mean;
        if (meanNs is not double ns || !(ns > 0)) return "NA";
        double value = work / ns * PerNanosecondToUnit;
        return value >= 100 ? value.ToString("N0", style.CultureInfo) : value.ToString("N2", style.CultureInfo);
    }

    public override string ToString() => ColumnName;
}

/// <summary>2·M·N·K / mean time, for benchmarks whose parameters describe a matrix product (see <see cref="MatMulShape"/>).</summary>
public sealed class GFlopsColumn : ThroughputColumn
{
    public override string Id => "MiniGpt.GFlops";
    public override string ColumnName => "GFLOP/s";
    public override string Legend => "Matmul throughput: 2·M·N·K floating-point operations / mean time, in 10⁹ per second";
    protected override double PerNanosecondToUnit => 1.0; // FLOP/ns = GFLOP/s
    protected override double? WorkPerOp(BenchmarkCase benchmarkCase) => MatMulShape.FromCase(benchmarkCase)?.Flops;
}

/// <summary>B·T / mean time, for training-step benchmarks.</summary>
public sealed class TokensPerSecondColumn : ThroughputColumn
{
    public override string Id => "MiniGpt.TokensPerSecond";
    public override string ColumnName => "tok/s";
    public override string Legend => "Training throughput: batch·n_ctx tokens / mean time of one step";
    protected override double PerNanosecondToUnit => 1e9;
    protected override double? WorkPerOp(BenchmarkCase benchmarkCase) =>
        benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == nameof(TrainStepBench.Workload))?.Value is string w
        && benchmarkCase.Descriptor.Type == typeof(TrainStepBench)
            ? TrainStepBench.TokensPerStep(w)
            : null;
}

/// <summary>Model FLOP utilisation of a training step: model FLOPs (Flops.PerStep) / mean time / the machine's peak.</summary>
public sealed class MfuColumn : ThroughputColumn
{
    private static readonly Lazy<MiniGpt.Training.Flops.Peak> Peak = new(() => MiniGpt.Training.Flops.MachinePeak(
        MiniGpt.Tensors.WorkerPool.Shared.Threads));
    public override string Id => "MiniGpt.Mfu";
    public override string ColumnName => "MFU %";
    public override string Legend => $"Model FLOP utilisation: model FLOPs per step / mean time / {Peak.Value}";
    protected override double PerNanosecondToUnit => 1e9 / Peak.Value.FlopsPerSecond * 100;
    protected override double? WorkPerOp(BenchmarkCase benchmarkCase) =>
        benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == nameof(TrainStepBench.Workload))?.Value is string w
        && benchmarkCase.Descriptor.Type == typeof(TrainStepBench)
            ? TrainStepBench.FlopsPerStep(w)
            : null;
}

/// <summary>Text encoded per second, for the tokenizer benchmarks: corpus bytes / mean time.</summary>
public sealed class MegabytesPerSecondColumn : ThroughputColumn
{
    public override string Id => "MiniGpt.MBps";
    public override string ColumnName => "MB/s";
    public override string Legend => "Encoding throughput: UTF-8 bytes of the corpus / mean time, in 10⁶ bytes per second";
    protected override double PerNanosecondToUnit => 1e3; // bytes/ns = 10⁹ B/s = 10³ MB/s
    protected override double? WorkPerOp(BenchmarkCase benchmarkCase) =>
        benchmarkCase.Descriptor.Type == typeof(TokenizerBench) ? TokenizerBench.CorpusBytes : null;
}
