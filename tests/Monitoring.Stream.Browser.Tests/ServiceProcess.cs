using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Monitoring.Stream.Browser.Tests;

/// <summary>
/// The real <c>monitoring-stream run</c> started as a process on a loopback port with a temporary data
/// folder and the synthetic load; killed (with its children) and its folder deleted on dispose.
/// </summary>
internal sealed class ServiceProcess : IAsyncDisposable
{
    private static readonly TimeSpan s_startTimeout = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly string? _ownedDataDirectory;

    private ServiceProcess(Process process, int port, string dataDirectory, bool ownsDataDirectory)
    {
        _process = process;
        Port = port;
        DataDirectory = dataDirectory;
        _ownedDataDirectory = ownsDataDirectory ? dataDirectory : null;
        BaseAddress = new Uri($"http://127.0.0.1:{port}/");
    }

    /// <summary>The port it listens on.</summary>
    public int Port { get; }

    /// <summary>Its data folder.</summary>
    public string DataDirectory { get; }

    /// <summary>Where the page and the API are.</summary>
    public Uri BaseAddress { get; }

    /// <summary>What it printed so far, for failure messages.</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>A loopback port nobody listens on at the moment.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Starts the service and waits until <c>/health/live</c> answers; fails with its output when it does not within 60 s.</summary>
    public static Task<ServiceProcess> StartAsync(int? port = null, string? dataDirectory = null, params string[] extraArguments) =>
        StartAsync(new Dictionary<string, string>(), port, dataDirectory, extraArguments);

    /// <summary>Starts the service with extra <paramref name="environment"/> variables (e.g. <c>MONITORING_STREAM__...</c> settings), as <see cref="StartAsync(int?, string?, string[])"/>.</summary>
    public static async Task<ServiceProcess> StartAsync(IReadOnlyDictionary<string, string> environment, int? port = null, string? dataDirectory = null, params string[] extraArguments)
    {
        string dll = RepositoryPaths.ServerDll;
        if (!File.Exists(dll))
        {
            throw new FileNotFoundException($"The service is not built at {dll}; build the solution first.", dll);
        }

        int p = port ?? FreePort();
        bool owns = dataDirectory is null;
        string data = dataDirectory ?? Directory.CreateTempSubdirectory("ms-browser-").FullName;
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = data,
        };
        foreach (string a in (string[])[dll, "run", "--urls", $"http://127.0.0.1:{p}", "--data-dir", data, "--demo-load", .. extraArguments])
        {
            start.ArgumentList.Add(a);
        }

        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        // Windows of 2 s with 1 s of lateness (instead of 10 s and 5 s): the first statistics reach the
        // page within seconds, so a test waits seconds, not a quarter of a minute, for its first chart.
        start.Environment["MONITORING_STREAM__Pipeline__WindowSize"] = "00:00:02";
        start.Environment["MONITORING_STREAM__Pipeline__AllowedLateness"] = "00:00:01";
        foreach ((string name, string value) in environment)
        {
            start.Environment[name] = value;
        }

        var process = new Process { StartInfo = start };
        var service = new ServiceProcess(process, p, data, owns);
        process.OutputDataReceived += (_, e) => service.Append(e.Data);
        process.ErrorDataReceived += (_, e) => service.Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await service.WaitLiveAsync().ConfigureAwait(false);
        }
        catch
        {
            await service.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return service;
    }

    /// <summary>Kills the process (and its children) and waits for it to exit, at most 15 s.</summary>
    public async Task StopAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
            // It exited between the check and the kill.
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await _process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAsync().ConfigureAwait(false);
        }
        finally
        {
            _process.Dispose();
            if (_ownedDataDirectory is not null)
            {
                try
                {
                    Directory.Delete(_ownedDataDirectory, recursive: true);
                }
                catch (IOException)
                {
                    // A file still held open: the temporary folder is left to the OS.
                }
            }
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }

    private async Task WaitLiveAsync()
    {
        using var http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(2) };
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < s_startTimeout)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"monitoring-stream run exited with {_process.ExitCode} before answering:\n{Output}");
            }

            try
            {
                using HttpResponseMessage response = await http.GetAsync(new Uri("health/live", UriKind.Relative)).ConfigureAwait(false);
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }
            catch (TaskCanceledException)
            {
                // Listening but slow to answer.
            }

            await Task.Delay(200).ConfigureAwait(false);
        }

        throw new TimeoutException($"monitoring-stream run did not answer /health/live within {s_startTimeout.TotalSeconds} s:\n{Output}");
    }
}
