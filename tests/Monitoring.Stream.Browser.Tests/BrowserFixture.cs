using Microsoft.Playwright;

namespace Monitoring.Stream.Browser.Tests;

/// <summary>
/// One headless Chromium for every browser test: Debian's <c>/usr/bin/chromium</c> (build.sh installs it),
/// driven by the Playwright driver that ships in the Microsoft.Playwright package; no browser is downloaded.
/// </summary>
public sealed class BrowserFixture : IAsyncLifetime
{
    /// <summary>Where Debian installs Chromium.</summary>
    public const string ChromiumPath = "/usr/bin/chromium";

    private IPlaywright? _playwright;
    private IBrowser? _browser;

    /// <summary>The browser.</summary>
    public IBrowser Browser => _browser ?? throw new InvalidOperationException("The browser is not started.");

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        if (!File.Exists(ChromiumPath))
        {
            throw new FileNotFoundException($"No Chromium at {ChromiumPath}: run ./build.sh test (it installs Debian's chromium), or apt-get install chromium.", ChromiumPath);
        }

        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath,
            Headless = true,
            Timeout = 30_000,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        if (_browser is not null)
        {
            await _browser.CloseAsync();
        }

        _playwright?.Dispose();
    }
}
