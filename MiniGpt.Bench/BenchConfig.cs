using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using Perfolizer.Horology;

namespace MiniGpt.Bench;

/// <summary>
/// A short job (3 warm-up and 10 measured iterations of ~250 ms) so the whole suite takes minutes,
/// the memory diagnoser (Allocated per operation), and the throughput columns (GFLOP/s, tokens/s).
/// A job given on the command line (e.g. --job dry) replaces this one.
/// </summary>
public sealed class BenchConfig : ManualConfig
{
    public BenchConfig()
    {
        AddJob(Job.Default
            .WithWarmupCount(3)
            .WithIterationCount(10)
            .WithIterationTime(TimeInterval.FromMilliseconds(250))
            .WithId("Short")
            .AsDefault()); // a default job: used unless the command line names one (--job dry, --job short, ...)
        AddDiagnoser(MemoryDiagnoser.Default);
        AddColumn(StatisticColumn.Median, new GFlopsColumn(), new TokensPerSecondColumn(), new MfuColumn(), new MegabytesPerSecondColumn());
    }
}
