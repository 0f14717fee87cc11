from .tap import TapCodatCommerce

TapCodatCommerce.cli()
