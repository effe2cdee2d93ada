using System.Diagnostics;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Kafka.Tests.Support;

/// <summary>Runs a script of tests/interop under Debian's Python 3 (with python3-msgpack and python3-confluent-kafka) and returns its standard output.</summary>
internal static class PythonRunner
{
    // Debian's interpreter, where apt installs the modules; a python3 earlier on PATH (pyenv, venv) may lack them.
    private static string Interpreter => File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    public static async Task<string> RunAsync(string script, TimeSpan timeout, params string[] args)
    {
        var start = new ProcessStartInfo(Interpreter)
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

        using Process process = Process.Start(start) ?? throw new InvalidOperationException("python3 did not start");
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
            throw new TimeoutException($"python3 {script} did not finish within {timeout.TotalSeconds} s: {await stderr}");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"python3 {script} exited with {process.ExitCode} (python3-msgpack and python3-confluent-kafka are installed by ./build.sh test): {await stderr}");
        }

        return await stdout;
    }
}
