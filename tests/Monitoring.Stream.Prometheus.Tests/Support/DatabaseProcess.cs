using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Monitoring.Stream.Prometheus.Tests.Support;

/// <summary>
/// A VictoriaMetrics or Prometheus server from Debian's packages, started by a test on 127.0.0.1 with a free port
/// and its own data folder, waited for with a bounded timeout, and killed on dispose.
/// </summary>
internal sealed class DatabaseProcess : IAsyncDisposable
{
    private static readonly TimeSpan s_startTimeout = TimeSpan.FromSeconds(30);
    private readonly string _program;
    private readonly Func<int, string[]> _arguments;
    private readonly string _readyPath;
    private readonly StringBuilder _output = new();
    private Process? _process;

    private DatabaseProcess(string program, Func<int, string[]> arguments, string readyPath, string dataDirectory)
    {
        _program = program;
        _arguments = arguments;
        _readyPath = readyPath;
        DataDirectory = dataDirectory;
        Port = FreePort();
    }

    public int Port { get; }

    public string DataDirectory { get; }

    public Uri BaseUri => new($"http://127.0.0.1:{Port}/");

    public Uri WriteUri => new(BaseUri, "api/v1/write");

    public static HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(20) };

    public static async Task<DatabaseProcess> StartVictoriaMetricsAsync()
    {
        string data = NewTempDirectory("vm");
        var db = new DatabaseProcess("victoria-metrics", port =>
        [
            $"-httpListenAddr=127.0.0.1:{port}", $"-storageDataPath={data}", "-retentionPeriod=1y",
            "-search.latencyOffset=0s", "-loggerLevel=ERROR",
        ], "health", data);
        await db.StartAsync();
        return db;
    }

    public static async Task<DatabaseProcess> StartPrometheusAsync()
    {
        string data = NewTempDirectory("prom");
        string config = Path.Combine(data, "prometheus.yml");
        await File.WriteAllTextAsync(config, "global:\n  scrape_interval: 1m\nscrape_configs: []\n");
        var db = new DatabaseProcess("prometheus", port =>
        [
            "--web.enable-remote-write-receiver", $"--web.listen-address=127.0.0.1:{port}",
            $"--storage.tsdb.path={Path.Combine(data, "tsdb")}", $"--config.file={config}", "--log.level=warn",
        ], "-/ready", data);
        await db.StartAsync();
        return db;
    }

    /// <summary>Starts the server (again, on the same port and data) and waits until it answers its readiness endpoint.</summary>
    public async Task StartAsync()
    {
        var info = new ProcessStartInfo(_program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in _arguments(Port))
        {
            info.ArgumentList.Add(argument);
        }

        Process process = Process.Start(info) ?? throw new InvalidOperationException("could not start " + _program);
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;

        DateTime deadline = DateTime.UtcNow + s_startTimeout;
        while (true)
        {
            Assert.False(process.HasExited, $"{_program} exited with {(process.HasExited ? process.ExitCode : 0)}: {Output}");
            try
            {
                using HttpResponseMessage response = await Http.GetAsync(new Uri(BaseUri, _readyPath));
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }

            Assert.True(DateTime.UtcNow < deadline, $"{_program} was not ready within {s_startTimeout.TotalSeconds} s: {Output}");
            await Task.Delay(50);
        }
    }

    /// <summary>
    /// Stops the server and waits for it to exit; its data folder stays. Graceful is SIGTERM, on which both servers
    /// flush what they hold in memory (a SIGKILL loses the last second or so of VictoriaMetrics' writes), with a
    /// kill after 20 s.
    /// </summary>
    public async Task StopAsync(bool graceful = false)
    {
        if (_process is { } process)
        {
            _process = null;
            if (graceful && !process.HasExited)
            {
                using Process term = Process.Start("kill", ["-TERM", process.Id.ToString(CultureInfo.InvariantCulture)]);
                await term.WaitForExitAsync();
                using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(20));
                try
                {
                    await process.WaitForExitAsync(grace.Token);
                }
                catch (OperationCanceledException)
                {
                    // Killed below.
                }
            }

            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }

            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            await process.WaitForExitAsync(cts.Token);
            process.Dispose();
        }
    }

    public string Output
    {
        get
        {
            lock (_output)
            {
                string text = _output.ToString();
                return text.Length > 3000 ? text[^3000..] : text;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        try
        {
            Directory.Delete(DataDirectory, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp folder is harmless.
        }
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.AppendLine(line);
            }
        }
    }

    private static string NewTempDirectory(string prefix)
    {
        string path = Path.Combine(Path.GetTempPath(), $"ms-{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(path);
        return path;
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
