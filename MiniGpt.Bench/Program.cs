using BenchmarkDotNet.Running;

namespace MiniGpt.Bench;

/// <summary>
/// Benchmarks of the matmul kernels and of a whole training step.
///   dotnet run -c Release --project MiniGpt.Bench -- --filter '*MatMul*'
///   dotnet run -c Release --project MiniGpt.Bench -- --filter '*TrainStep*'
///   dotnet run -c Release --project MiniGpt.Bench -- --filter '*Tokenizer*'   (encoding MB/s of each tokenizer)
///   dotnet run -c Release --project MiniGpt.Bench -- --filter '*' --job dry   (smoke test: one invocation each)
/// </summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
