namespace Monitoring.Stream.Browser.Tests;

/// <summary>One <c>monitoring-stream run --demo-load</c> shared by the tests of a class that only read from it.</summary>
public sealed class ServiceFixture : IAsyncLifetime
{
    private ServiceProcess? _service;

    /// <summary>Where the page and the API are.</summary>
    public Uri BaseAddress => (_service ?? throw new InvalidOperationException("The service is not started.")).BaseAddress;

    /// <inheritdoc />
    public async Task InitializeAsync() => _service = await ServiceProcess.StartAsync();

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_service is not null)
        {
            await _service.DisposeAsync();
        }
    }
}
