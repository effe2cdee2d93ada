using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.RegularExpressions;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Server.Tests.Support;

/// <summary>
/// The built <c>monitoring-stream</c> executable started as a process (<c>dotnet monitoring-stream.dll ...</c>) with a
/// temporary data folder; <see cref="StartAsync"/> waits for the address it prints. Disposing kills it if it still runs.
/// </summary>
internal sealed partial class ServerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();
    private readonly TaskCompletionSource<Uri> _address = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TempDirectory? _ownedData;

    private ServerProcess(Process process, string dataDirectory, TempDirectory? ownedData)
    {
        _process = process;
        DataDirectory = dataDirectory;
        _ownedData = ownedData;
    }

    /// <summary>The service's data folder.</summary>
    public string DataDirectory { get; }

    /// <summary>The address it listens on.</summary>
    public Uri Address => _address.Task.Result;

    /// <summary>Whatever it printed so far (stdout and stderr).</summary>
    public string Output => string.Join('\n', _output);

    /// <summary>The process.</summary>
    public Process Process => _process;

    /// <summary>The executable, built with the test project's configuration.</summary>
    public static string Assembly
    {
        get
        {
            string configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
            string path = Path.Combine(RepositoryPaths.Root, "src", "Monitoring.Stream.Server", "bin", configuration, "net10.0", "monitoring-stream.dll");
            Assert.True(File.Exists(path), $"the server is not built at {path}");
            return path;
        }
    }

    /// <summary>Starts <c>run</c> on 127.0.0.1 (a free port) with <paramref name="args"/> and <paramref name="environment"/>, and waits until it listens.</summary>
    public static async Task<ServerProcess> StartAsync(IEnumerable<string>? args = null, IReadOnlyDictionary<string, string>? environment = null, string? dataDirectory = null)
    {
        List<string> given = [.. args ?? []];
        ServerProcess server = Launch(given.Contains("--urls") ? ["run", .. given] : ["run", "--urls", "http://127.0.0.1:0", .. given], environment, dataDirectory);
        Task finished = await Task.WhenAny(server._ready.Task, server._process.WaitForExitAsync(), Task.Delay(TimeSpan.FromSeconds(60))).ConfigureAwait(false);
        if (finished != server._ready.Task)
        {
            string output = server.Output;
            await server.DisposeAsync().ConfigureAwait(false);
            Assert.Fail($"the service did not print its address within 60 s (or exited). Output:\n{output}");
        }

        return server;
    }

    /// <summary>Starts the executable with exactly <paramref name="args"/> (plus --data-dir for run), without waiting.</summary>
    public static ServerProcess Launch(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null, string? dataDirectory = null)
    {
        TempDirectory? owned = dataDirectory is null ? new TempDirectory() : null;
        string data = dataDirectory ?? owned!.Path;
        // Through env(1), which resets SIGINT and SIGTERM to their defaults before it execs dotnet (same process id):
        // a test run started as a background job of a non-interactive shell inherits SIGINT ignored, the executable
        // would inherit that too, and the tests' Ctrl+C would never reach its handler.
        var start = new ProcessStartInfo("env")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = data,
        };
        start.ArgumentList.Add("--default-signal=INT,TERM");
        start.ArgumentList.Add("dotnet");
        start.ArgumentList.Add(Assembly);
        List<string> list = [.. args];
        foreach (string arg in list)
        {
            start.ArgumentList.Add(arg);
        }

        if (list.Count > 0 && list[0] == "run" && !list.Contains("--data-dir"))
        {
            start.ArgumentList.Add("--data-dir");
            start.ArgumentList.Add(data);
        }

        // Settings from the machine must not leak into a test.
        foreach (string key in start.Environment.Keys.Where(k => k.StartsWith("MONITORING_STREAM__", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            start.Environment.Remove(key);
        }

        start.Environment["DOTNET_gcServer"] = "0";
        foreach ((string key, string value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        var process = new Process { StartInfo = start };
        var server = new ServerProcess(process, data, owned);
        process.OutputDataReceived += (_, e) => server.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => server.OnLine(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return server;
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        _output.Enqueue(line);
        Match m = ListeningLine().Match(line);
        if (m.Success)
        {
            _address.TrySetResult(new Uri(m.Groups[1].Value));
        }

        // The last line of the start-up block: everything about the start has been printed.
        if (line.StartsWith("  try: curl", StringComparison.Ordinal))
        {
            _ready.TrySetResult();
        }
    }

    /// <summary>Sends SIGTERM (as a service manager does).</summary>
    public void Terminate() => Signal("TERM");

    /// <summary>Sends SIGINT (as Ctrl+C does).</summary>
    public void Interrupt() => Signal("INT");

    private void Signal(string signal)
    {
        using var kill = Process.Start("kill", ["-" + signal, _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!;
        kill.WaitForExit();
        Assert.Equal(0, kill.ExitCode);
    }

    /// <summary>Waits for the process to exit; fails the test when it does not within <paramref name="timeout"/>.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"the process did not exit within {timeout.TotalSeconds} s. Output:\n{Output}");
        }

        _process.WaitForExit(); // drains the output
        return _process.ExitCode;
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _process.Dispose();
            _ownedData?.Dispose();
        }
    }

    [GeneratedRegex(@"listening on (http://[^\s,]+)")]
    private static partial Regex ListeningLine();
}
