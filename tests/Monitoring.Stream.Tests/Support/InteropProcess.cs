using System.Diagnostics;

namespace Monitoring.Stream.Tests.Support;

/// <summary>Runs a script of tests/interop under an interpreter (Node.js, Python) and returns its standard output, or fails with its standard error.</summary>
internal static class InteropProcess
{
    /// <param name="program">The interpreter.</param>
    /// <param name="script">The script, relative to tests/interop.</param>
    /// <param name="timeout">How long the script may run before it is killed.</param>
    /// <param name="failureHint">Added to the message when the script exits with an error.</param>
    /// <param name="args">The script's arguments.</param>
    public static async Task<string> RunAsync(string program, string script, TimeSpan timeout, string failureHint, params string[] args)
    {
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = RepositoryPaths.Interop,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(script);
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"{program} did not start");
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        using var expired = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(expired.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {script} did not finish within {timeout.TotalSeconds} s: {await stderr}");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {script} exited with {process.ExitCode}{failureHint}: {await stderr}");
        }

        return await stdout;
    }
}
