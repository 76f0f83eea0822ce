using System.Diagnostics;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// The file-based examples in docs/examples run as the README says (`dotnet run docs/examples/x.cs`), exit 0 and print
/// their self-checks as passed, so they cannot rot unnoticed. Each check is the example's own comparison (rows of a
/// pattern sum to 1, a hook ablation equals the weight ablation, a hooked gradient equals (softmax − onehot)/(B·T), a
/// hand-computed score equals the library's); a failed one prints FAILED and exits 1.
/// </summary>
public class ExampleTests
{
    [Theory]
    [InlineData("head-pattern.cs", "check: every row sums to 1: ok")]
    [InlineData("ablate-head.cs", "check: hook ablation = W_O ablation")]
    [InlineData("train-step.cs", "check: the hooked gradient is (softmax − onehot)/(B·T)")]
    [InlineData("prev-token-score.cs", "check: by hand = library")]
    public void AnExampleRunsAndPassesItsChecks(string file, string check)
    {
        var (code, output) = Run(file);
        Assert.True(code == 0, $"dotnet run docs/examples/{file} exited {code}:\n{output}");
        Assert.Contains(check, output);
        Assert.DoesNotContain("FAILED", output);
    }

    [Fact]
    public void AnExampleRefusesAHeadTheModelDoesNotHave()
    {
        var (code, output) = Run("ablate-head.cs", "", "9", "0"); // "" : the default checkpoint
        Assert.Equal(2, code);
        Assert.Contains("error: L9H0 is not in a model of", output);
        Assert.DoesNotContain("   at ", output); // no stack trace
    }

    private static (int Code, string Output) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = TestPaths.RepoRoot };
        psi.ArgumentList.Add("run");
        psi.ArgumentList.Add(Path.Combine("docs", "examples", file));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(TimeSpan.FromMinutes(4))) { p.Kill(entireProcessTree: true); throw new TimeoutException($"{file} ran past 4 minutes:\n{stdout}"); }
        return (p.ExitCode, stdout + stderr.Result);
    }
}
